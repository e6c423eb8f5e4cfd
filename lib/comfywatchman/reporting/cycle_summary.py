"""What ``--run-cycle`` prints on stdout when the cycle ends: two lines for people, or one JSON document.

The lines for people get a UTC timestamp in front when stdout is not a terminal (a cron log), so every line
of that file says when it was written. ``--json`` prints the same facts for programs, without timestamps.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from comfywatchman.config import Config
from comfywatchman.errors import EXIT_OK, EXIT_SKIPPED, ArtifactError
from comfywatchman.reporting import status_file
from comfywatchman.state_manager import StateManager

READINESS = ("ready", "resolvable", "needs_review", "blocked", "error")


def _cycle_record(config: Config, cycle_id: str) -> dict[str, Any] | None:
    try:
        found = None
        for record in StateManager(config.state_dir).cycles():
            if record["id"] == cycle_id:
                found = record
        return found
    except (OSError, ArtifactError):
        return None


def _report(config: Config) -> dict[str, Any] | None:
    """Return master_status.json without its lists (the summary, the cycle, stale): read from its last line
    alone when the file is in the layout the report writes (it runs to tens of megabytes on a large
    install), else from the validated whole; None when there is none or it is broken."""
    try:
        return status_file.read_head(config.reports_dir / "master_status.json")
    except ArtifactError:
        return None


def build(config: Config, cycle_id: str, exit_code: int) -> dict[str, Any]:
    """Return the summary of cycle ``cycle_id``: how it ended, its counts and stages, and the report
    (``report`` is None when there is none yet)."""
    record = _cycle_record(config, cycle_id) or {}
    try:
        stages = StateManager(config.state_dir).stage_runs(cycle_id)
    except (OSError, ArtifactError):
        stages = []
    report = _report(config)
    outcome = "skipped" if exit_code == EXIT_SKIPPED else ("success" if exit_code == EXIT_OK else "failed")
    return {
        "cycle_id": cycle_id,
        "exit_code": exit_code,
        "outcome": outcome,
        "skipped_reason": record.get("skipped_reason"),
        "trigger": record.get("trigger"),
        "started_at": record.get("started_at"),
        "duration_s": record.get("duration_s"),
        "counts": record.get("counts", {}),
        "errors": record.get("errors", []),
        "stages": [
            {k: run[k] for k in ("stage", "ok", "duration_s", "detail", "errors", "findings", "counts") if k in run}
            for run in stages
        ],
        "report": None
        if report is None
        else {
            "json": str(config.reports_dir / "master_status.json"),
            "markdown": str(config.reports_dir / "master_status.md"),
            "generated_at": report["generated_at"],
            "cycle_id": report["cycle_id"],
            "demo": report["demo"],
            "summary": report["summary"],
            "stale": report.get("stale"),
        },
    }


def human_lines(summary: dict[str, Any]) -> list[str]:
    """Return the report's headline and where it is (nothing when the cycle was skipped or wrote none)."""
    report = summary["report"]
    if summary["outcome"] == "skipped" or report is None:
        return []
    s = report["summary"]
    parts = ", ".join(f"{s[k]} {k.replace('_', ' ')}" for k in READINESS if s[k])
    where = " (demo install)" if report["demo"] else ""
    lines = [f"{s['workflows']} workflows{where}: {parts or 'none found'}"]
    stale = report["stale"]
    if stale:
        lines.append(f"report: {report['markdown']} (stale since {stale['since']}: {stale['reason']})")
    else:
        lines.append(f"report: {report['markdown']}")
    return lines


def utc_stamp(now: Callable[[], float] = time.time) -> str:
    """Return the time ``now`` as the timestamp put in front of lines that go to a file."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now()))


def emit(summary: dict[str, Any], as_json: bool, stream: TextIO | None = None) -> None:
    """Print ``summary`` on ``stream`` (stdout): JSON, or the lines for people, timestamped unless a terminal."""
    stream = stream or sys.stdout
    if as_json:
        stream.write(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        return
    stamp = "" if stream.isatty() else f"{utc_stamp()} "
    for line in human_lines(summary):
        stream.write(f"{stamp}{line}\n")
