"""Report: write ``output/reports/status/master_status.json`` and ``.md`` from the cycle's artifacts."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from comfywatchman import artifacts
from comfywatchman.comfy.manager_files import maps_used
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import markdown, status_report, verification
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.state_manager import StateManager

logger = logging.getLogger(__name__)

HISTORY = "report_history.json"


def recent_intake(state_dir: Any, limit: int) -> list[dict[str, Any]]:
    """Return the last ``limit`` acknowledgments of ``intake_log.jsonl``, newest first."""
    if limit <= 0:
        return []
    return list(reversed(deque(artifacts.read_jsonl(state_dir / "intake_log.jsonl", "intake_log_entry"), maxlen=limit)))


def run(ctx: StageContext) -> StageOutcome:
    """Build the master status report from scan.json and search.json; write JSON and Markdown."""
    outcome = StageOutcome("report")
    state = ctx.state_dir
    now_text = ctx.now().isoformat(timespec="seconds")
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
    ranked = status_report.actions(workflows)

    runs = StateManager(state).stage_runs(ctx.cycle_id)
    cycle_errors = [e for r in runs for e in r["errors"]] + outcome.errors
    document = {
        "generated_at": now_text,
        "cycle_id": ctx.cycle_id,
        "comfyui_root": scan["comfyui_root"],
        "demo": scan["demo"],
        "offline": bool(search and search["offline"]),
        "manager_maps": maps_used(scan["node_map"], (search or {}).get("model_list"), ctx.config.comfyui_root),
        "summary": summary,
        "actions": verification.merge_actions(ranked, verify) if verify else ranked,
        "workflows": [{k: v for k, v in w.items() if not k.startswith("_")} for w in workflows],
        **({"verification": checked} if checked else {}),
        "recent_intake": recent_intake(state, ctx.config.section("report")["recent_intake"]),
        "cycle": {
            "cycle_id": ctx.cycle_id,
            "stages": [{k: r[k] for k in ("stage", "ok", "duration_s", "detail", "errors", "counts")} for r in runs],
            "errors": cycle_errors,
        },
    }
    reports = ctx.config.reports_dir
    artifacts.write(reports / "master_status.json", document, "master_status")
    artifacts.atomic_write_text(reports / "master_status.md", markdown.render(document))
    new_history = {
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
    artifacts.write(state / HISTORY, new_history, "report_history")
    outcome.counts = {k: v for k, v in summary.items() if isinstance(v, int)}
    outcome.detail = ", ".join(f"{summary[r]} {r}" for r in status_report.READINESS if summary[r]) or "no workflows"
    logger.info("report: %s -> %s", outcome.detail, reports / "master_status.md")
    return outcome
