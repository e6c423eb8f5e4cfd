"""A stale report: when intake folders could not be listed, the last good report stays, marked with why.

Rewriting the report from the workflows that happened to be readable would show an unmounted drive's
workflows as gone ("0 workflows") and restart their readiness history; keeping the last good one, with the
reason and the time it went stale, tells the reader both what was true and that it may no longer be.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, availability
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import status_file


def intake_entries(state_dir: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """Return this cycle's ``intake.json`` ``unavailable`` entries, and the workflow paths it keeps from
    unavailable folders (their history is kept); none when it is missing or unreadable. One read for both:
    of the keys before its workflows alone when it is written compact with sorted keys (``_head``)."""
    path = state_dir / "intake.json"
    try:
        document = _head(path) or artifacts.read_optional(path, "intake")
    except ArtifactError:
        return [], set()
    if not document:
        return [], set()
    return list(document.get("unavailable", [])), {w["path"] for w in document.get("kept", [])}


# What follows the keys before the workflows in intake.json written compact with sorted keys, and how far in
# it is looked for (the workflows, one entry per acknowledged workflow, are most of the file).
_WORKFLOWS = b',"workflows":['
_HEAD_MOST = 1 << 20


def _head(path: Path) -> dict[str, Any] | None:
    """Return intake.json's keys before its workflows (``unavailable`` and ``kept`` among them), validated with
    no workflow, read from the file's start alone; None when it is not laid out that way (the caller reads it
    whole). The first ``,"workflows":[`` outside a string is the top-level key's when what comes before it
    parses as an object: a nested one would leave a bracket open."""
    try:
        with path.open("rb") as handle:
            data = handle.read(1 << 16)
            while _WORKFLOWS not in data and len(data) < _HEAD_MOST:
                more = handle.read(1 << 16)
                if not more:
                    break
                data += more
    except OSError:
        return None
    cut = data.find(_WORKFLOWS)
    if cut < 0 or not data.startswith(b"{"):
        return None
    try:
        head = orjson.loads(data[:cut] + b"}")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(head, dict):
        return None
    document: dict[str, Any] = {**head, "workflows": []}
    artifacts.validate(document, "intake", str(path))
    return document


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
