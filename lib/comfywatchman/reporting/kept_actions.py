"""The last report's ranked actions kept between cycles (``state/report_actions.bin``), as its page was made of
them, so a cycle where a few workflows changed neither parses every action line of master_status.json again
nor writes every action down again.

Each action is kept slim (``slim``): what ranks it and what the page reads of an action it does not show alone
(a search waiting in its group, a download past the first few of its kind). The few the page shows alone are
completed from their lines of the report as they are copied (``complete``): most of an action's fields (its
commands, drift, alternatives, notes) were most of what was read back, for nothing.

The file is a list of records, each a first line (JSON: what it was made from, the report's stat, how many
actions the list holds after it, the length and digest of the rest) and a value in Python's ``marshal`` format, which is
read back several times faster than the report's lines are parsed, each value many actions share held once
(as in memory). The first record holds the whole list; each later one a change of it, appended by a report
made from the list: the ids of the actions left out and the actions made again, placed by rank. After
MOST_CHANGES changes the list is written whole again. It is a cache, safe to lose: a missing, torn or foreign
file, or one kept for another report, costs a parse of the report's lines, never a wrong page.
"""

from __future__ import annotations

import bisect
import logging
import marshal
import os
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, stage_inputs

logger = logging.getLogger(__name__)

FILE = "report_actions.bin"
# Bump when what a record holds changes; the Python that wrote it is part of its tag (``marshal``'s format is
# its own).
FORMAT = 5
_TAG = f"{sys.implementation.cache_tag}/marshal-{marshal.version}"
# Changes appended before the list is written whole again (each is applied to the list when it is read).
MOST_CHANGES = 8


# The fields of every action kept: what ``rank`` orders by, and what the page and its totals read of an action
# in a group (``markdown.rank_items``, ``markdown.group_item``, ``status_report.action_totals``).
SLIM = ("id", "kind", "blocks", "item", "detail", "size", "workflows")


def slim(action: Mapping[str, Any]) -> dict[str, Any]:
    """Return what is kept of ``action``: its ``SLIM`` fields, and a download's commands (a group of downloads
    shows each one's command, or one ``hf download`` of them all)."""
    # Spelled out, not a loop over SLIM: a full report keeps ten thousand actions at 2,000 workflows.
    kept = {
        "id": action["id"],
        "kind": action["kind"],
        "blocks": action["blocks"],
        "item": action["item"],
        "detail": action["detail"],
        "size": action["size"],
        "workflows": action["workflows"],
    }
    if kept["kind"] == "download" and "commands" in action:
        kept["commands"] = action["commands"]
    return kept


def complete(action: dict[str, Any], line: bytes) -> None:
    """Complete the kept (slim) ``action`` with every field of its line of the report; raise ValueError when the
    line is not that action's."""
    whole = orjson.loads(line)
    if not isinstance(whole, dict) or whole.get("id") != action["id"]:
        raise ValueError(f"not the line of action {action['id']}")
    action.update(whole)


def rank(action: Mapping[str, Any]) -> tuple[int, str, str, str]:
    """Return what ``action_ids.ranked`` orders an action by."""
    return (-action["blocks"], action["kind"], action["item"], action["id"])


def merge(stays: list[dict[str, Any]], made: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Return ranked actions ``stays`` with the ``made`` ones (ranked too, no id of theirs among ``stays``) put in
    by rank, and where each made one went among ``stays`` (before the first that ranks after it)."""
    places = [bisect.bisect_left(stays, rank(action), key=rank) for action in made]
    ranked: list[dict[str, Any]] = []
    start = 0
    for action, place in zip(made, places, strict=True):
        ranked += stays[start:place]
        ranked.append(action)
        start = place
    ranked += stays[start:]
    return ranked, places


class Kept:
    """The actions kept for this cycle's report (``load``), and how the report changed them when it made its
    list from them (``change``: the ids left out, the actions made again), for ``save``."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("actions", "change", "records", "size")

    actions: list[dict[str, Any]] | None
    records: int
    size: int
    change: tuple[list[str], list[dict[str, Any]]] | None

    def __init__(
        self,
        actions: list[dict[str, Any]] | None = None,
        records: int = 0,
        size: int = 0,
        change: tuple[list[str], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.actions, self.records, self.size, self.change = actions, records, size, change


def load(state: Path, key: str, report: Path, count: int) -> Kept:
    """Return the actions kept for the report now at ``report`` (``count`` of them, made from ``key``: the kept
    index's), each ``slim``, or a Kept holding none (a broken or foreign file is logged and ignored)."""
    path = state / FILE
    data = artifacts.read_cache(path, "the report parses its actions")
    if data is None:
        return Kept()
    try:
        actions, records, head = _records(data)
    except (ValueError, EOFError, TypeError, KeyError, IndexError, orjson.JSONDecodeError) as exc:
        logger.warning("%s: not whole, or written by another version (%s); the report parses its actions", path, exc)
        return Kept()
    wanted = {"key": key, "report": stage_inputs.stat_key(report), "actions": count}
    if any(head.get(name) != value for name, value in wanted.items()) or len(actions) != count:
        logger.debug("%s: kept for another report; the report parses its actions", path)
        return Kept()
    return Kept(actions, records, len(data))


def _records(data: bytes) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Return the list the records of ``data`` make, how many there are, and the last one's first line; raise
    ValueError (or what ``marshal`` raises) when they are not whole records of this version."""
    actions: list[dict[str, Any]] | None = None
    records, offset, head = 0, 0, None
    while offset < len(data):
        end = data.index(b"\n", offset)
        head = orjson.loads(data[offset:end])
        if not isinstance(head, dict) or head.get("format") != FORMAT or head.get("tag") != _TAG:
            raise ValueError("not a record of this version")
        size = head["bytes"]
        if not isinstance(size, int) or end + 1 + size > len(data):
            raise ValueError("a record cut short")
        blob = memoryview(data)[end + 1 : end + 1 + size]
        # marshal reads whatever bytes it is given: a record whose bytes changed (a bad block, an edit) must
        # not become actions that were never made.
        if _digest(blob) != head.get("digest"):
            raise ValueError("a record's bytes do not match its digest")
        value = marshal.loads(blob)
        if actions is None:
            actions = value if head.get("kind") == "list" and _actions(value) else None
            if actions is None:
                raise ValueError("the first record is not a list of actions")
        else:
            gone, made = value
            if head.get("kind") != "change" or not _actions(made) or not isinstance(gone, list):
                raise ValueError("a change is not a change of actions")
            left = set(gone)
            actions, _ = merge([a for a in actions if a["id"] not in left] if left else actions, made)
        records, offset = records + 1, end + 1 + size
    if actions is None or head is None:
        raise ValueError("no list")
    return actions, records, head


def _digest(blob: bytes | memoryview) -> str:
    """Return the digest a record's value is checked by."""
    # A CRC, not a hash: it tells a torn or damaged record (a cache's failures), at half sha256's time here.
    return f"crc32:{zlib.crc32(blob):08x}"


def _actions(value: Any) -> bool:
    """Return True when ``value`` is a list of actions (dicts)."""
    return isinstance(value, list) and set(map(type, value)) <= {dict}  # marshal makes plain dicts


def save(state: Path, kept: Kept, ranked: list[dict[str, Any]], key: str, report: Path) -> None:
    """Keep the ranked actions of the report just written to ``report`` (master_status.json): its change of the
    kept list appended when it made its list from it (``kept.change``) and the file is as it was read, else
    the whole list written (a temp file renamed over the last one). A failure is logged, and the next report
    parses the lines again. Not fsynced: a torn file is not whole (each record's length is recorded)."""
    path = state / FILE
    head = {"format": FORMAT, "tag": _TAG, "key": key, "report": stage_inputs.stat_key(report)}
    head["actions"] = len(ranked)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # A change appended only to the file as it was read (its length), its changes not too many yet.
        appends = kept.change is not None and kept.actions is not None and kept.records <= MOST_CHANGES
        if appends and os.stat(path).st_size == kept.size:
            gone, made = kept.change or ((), ())
            blob = marshal.dumps([gone, list(map(slim, made))])
            with open(path, "ab") as handle:
                change = {**head, "kind": "change", "bytes": len(blob), "digest": _digest(blob)}
                handle.write(orjson.dumps(change) + b"\n" + blob)
            return
        blob = marshal.dumps(list(map(slim, ranked)))
        with open(tmp, "wb") as handle:
            handle.write(orjson.dumps({**head, "kind": "list", "bytes": len(blob), "digest": _digest(blob)}) + b"\n")
            handle.write(blob)
        os.replace(tmp, path)
    except (OSError, ValueError) as exc:
        logger.warning("%s: not written (%s); the next report parses its actions again", path, exc)
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
