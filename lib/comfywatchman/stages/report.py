"""Report: write ``output/reports/status/master_status.json`` and ``.md`` from the cycle's artifacts."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, availability
from comfywatchman.comfy.manager_files import maps_used
from comfywatchman.download.safetensors import installed_broken
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import commands, markdown, staleness, status_report, verification
from comfywatchman.reporting import facts as install_facts
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.state_manager import StateManager

logger = logging.getLogger(__name__)

HISTORY = "report_history.json"


def recent_intake(state_dir: Any, limit: int) -> list[dict[str, Any]]:
    """Return the last ``limit`` acknowledgments of ``intake_log.jsonl``, newest first."""
    if limit <= 0:
        return []
    return list(reversed(deque(artifacts.read_jsonl(state_dir / "intake_log.jsonl", "intake_log_entry"), maxlen=limit)))


def next_history(workflows: list[dict[str, Any]], history: dict[str, Any]) -> dict[str, Any]:
    """Return report_history.json for the next cycle: per workflow, when it was last resolvable and what is
    missing now (an unreadable workflow keeps what it missed before)."""
    return {
        "workflows": {
            w["path"]: {
                "last_resolved_at": w["last_resolved_at"],
                "missing": w["_missing_keys"]
                if w["error"] is None
                else history["workflows"].get(w["path"], {}).get("missing", []),
            }
            for w in workflows
        }
    }


def model_folder_limits(state_dir: Any) -> list[dict[str, Any]]:
    """Return the model folders whose walk the cache stage cut short (``walk_limits`` of model_cache.json;
    none when it is missing or unreadable: the cache stage has said why)."""
    try:
        cache = artifacts.read_optional(state_dir / "model_cache.json", "model_cache")
    except ArtifactError as exc:
        logger.warning("%s", exc)
        return []
    return list((cache or {}).get("walk_limits", []))


def run(ctx: StageContext) -> StageOutcome:
    """Build the master status report from scan.json and search.json; write JSON and Markdown.

    When the intake could not list a folder that holds known workflows, the last good report is kept,
    marked stale with the reason, and the readiness history is left as it was.
    """
    outcome = StageOutcome("report")
    state = ctx.state_dir
    now_text = ctx.now().isoformat(timespec="seconds")
    unavailable = staleness.unavailable_entries(state)
    reports = ctx.config.reports_dir
    kept = staleness.keep_last_report(reports / "master_status.json", unavailable, ctx.cycle_id, now_text)
    if kept is not None:
        return _write_stale(kept, reports, outcome)
    scan = artifacts.read(state / "scan.json", "scan")
    # scan.json keeps the id of the cycle that last changed it (an unchanged scan is not rewritten), so the
    # two ids differ in every quiet cycle: nothing to compare here.
    try:
        search = artifacts.read(state / "search.json", "search")
    except ArtifactError as exc:
        outcome.fail(str(exc))
        search = None
    try:
        history = artifacts.read_optional(state / HISTORY, "report_history") or {"workflows": {}}
    except ArtifactError as exc:
        logger.warning("%s; readiness history starts afresh", exc)
        history = {"workflows": {}}
    count_inactive = ctx.config.section("scan")["count_inactive_nodes"]
    workflows, summary = status_report.build(scan, search, history["workflows"], count_inactive, now_text)
    verify = verification.load(state)
    checked = verification.apply(workflows, summary, verify, history["workflows"]) if verify else None
    facts = install_facts.gather(ctx, scan, workflows)
    ranked = status_report.actions(workflows, facts, status_report.gated_files(search))
    if verify:
        ranked = verification.merge_actions(ranked, verify)

    runs = StateManager(state).stage_runs(ctx.cycle_id)
    cycle_errors = [e for r in runs for e in r["errors"]] + outcome.errors
    document = {
        "generated_at": now_text,
        "cycle_id": ctx.cycle_id,
        "comfyui_root": scan["comfyui_root"],
        "demo": scan["demo"],
        "offline": bool(search and search["offline"]),
        "manager_maps": maps_used(scan["node_map"], (search or {}).get("model_list"), ctx.config.comfyui_root),
        "stale": _fresh_stale(unavailable, ctx.cycle_id, now_text),
        "summary": summary,
        "action_totals": status_report.action_totals(ranked),
        "actions": ranked,
        "search_now": {"next_cycle_at": facts.next_cycle_at, "commands": commands.search_commands(facts)[0]},
        "workflows": [{k: v for k, v in w.items() if not k.startswith("_")} for w in workflows],
        "model_folder_limits": model_folder_limits(state),
        **({"verification": checked} if checked else {}),
        "recent_intake": recent_intake(state, ctx.config.section("report")["recent_intake"]),
        "broken_models": installed_broken(state),
        "cycle": {
            "cycle_id": ctx.cycle_id,
            "stages": [{k: r[k] for k in ("stage", "ok", "duration_s", "detail", "errors", "counts")} for r in runs],
            "errors": cycle_errors,
        },
    }
    artifacts.write(reports / "master_status.json", document, "master_status")
    artifacts.atomic_write_text(reports / "master_status.md", markdown.render(document))
    new_history = next_history(workflows, history)
    # Workflows of an unavailable folder are not in this report; their history waits for them.
    for path in staleness.kept_paths(state) - new_history["workflows"].keys():
        if path in history["workflows"]:
            new_history["workflows"][path] = history["workflows"][path]
    artifacts.write(state / HISTORY, new_history, "report_history")
    outcome.counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    outcome.detail = ", ".join(f"{summary[r]} {r}" for r in status_report.READINESS if summary[r]) or "no workflows"
    logger.info("report: %s -> %s", outcome.detail, reports / "master_status.md")
    return outcome


def _fresh_stale(unavailable: list[dict[str, Any]], cycle_id: str, now_text: str) -> dict[str, Any] | None:
    """Return the ``stale`` object of a report written while folders are unavailable (no last one to keep)."""
    reason = availability.stale_reason(unavailable)
    return None if reason is None else staleness.stale_block(reason, unavailable, cycle_id, now_text)


def _write_stale(report: dict[str, Any], reports: Path, outcome: StageOutcome) -> StageOutcome:
    """Write the last report again, marked stale; return ``outcome`` saying so."""
    artifacts.write(reports / "master_status.json", report, "master_status")
    artifacts.atomic_write_text(reports / "master_status.md", markdown.render(report))
    outcome.counts = {k: v for k, v in report["summary"].items() if isinstance(v, int)}
    outcome.detail = f"kept the report of {report['generated_at']}, marked stale: {report['stale']['reason']}"
    logger.info("report: %s -> %s", outcome.detail, reports / "master_status.md")
    return outcome
