"""A stale report: when intake folders could not be listed, the last good report stays, marked with why.

Rewriting the report from the workflows that happened to be readable would show an unmounted drive's
workflows as gone ("0 workflows") and restart their readiness history; keeping the last good one, with the
reason and the time it went stale, tells the reader both what was true and that it may no longer be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, availability
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import status_file


def intake_entries(state_dir: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """Return this cycle's ``intake.json`` ``unavailable`` entries, and the workflow paths it keeps from
    unavailable folders (their history is kept); none when it is missing or unreadable. One read for both."""
    try:
        document = artifacts.read_optional(state_dir / "intake.json", "intake")
    except ArtifactError:
        return [], set()
    if not document:
        return [], set()
    return list(document.get("unavailable", [])), {w["path"] for w in document.get("kept", [])}


def stale_block(
    reason: str,
    unavailable: Sequence[Mapping[str, Any]],
    cycle_id: str,
    now_text: str,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the report's ``stale`` object; ``since`` carries over from ``previous`` (the last one)."""
    return {
        "reason": reason,
        "since": previous["since"] if previous else now_text,
        "checked_at": now_text,
        "cycle_id": cycle_id,
        "unavailable": [dict(entry) for entry in unavailable],
    }


def keep_last_report(
    path: Path, unavailable: Sequence[Mapping[str, Any]], cycle_id: str, now_text: str
) -> dict[str, Any] | None:
    """Return the last report at ``path`` marked stale for ``unavailable``, or None when there is none to keep
    (missing or unreadable: the caller writes a fresh one, marked stale too)."""
    reason = availability.stale_reason(unavailable)
    if reason is None:
        return None
    if not path.exists():
        return None
    try:
        # Read whole: a stale report is written again as it was (a rare cycle, not the one cron repeats).
        report = status_file.read(path)
    except ArtifactError:
        return None
    report["stale"] = stale_block(reason, unavailable, cycle_id, now_text, report.get("stale"))
    return report
