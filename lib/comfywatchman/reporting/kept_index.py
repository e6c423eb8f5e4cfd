"""The report's running totals kept between cycles, so a cycle where a few workflows changed costs what changed.

``state/report_index.pack`` keeps, after each report built in full or from it, a first line (JSON) with what
the index was made from (``key``: everything ``findings_basis`` holds besides the search's answers, and the
``mark`` of search.json's answers), how many actions master_status.json lists, and the distinct seeds of
node type actions; then one line per workflow in scan order::

    <digest of its scan.json line> <its contribution, compact JSON>

where a contribution (``contribution``) is what the workflow adds to the whole: its readiness, the actions
it needs with what it would seed them with, its page row and readiness history. A later report whose other
inputs are the same works out again only the workflows whose line or answers changed (the answers that
changed are the search's own count of them: ``answers.Answers.changed``), gathers the whole from the kept
contributions one line at a time (in scan order, so each action keeps the seed of the first workflow that
needs it), builds again only the actions those workflows needed before or need now, and copies every other
workflow and action line of the last master_status.json as it was (a resolved workflow's
``last_resolved_at`` set to now). It is a cache, safe to lose: when it is missing, broken, made from other
inputs, or the report's outputs are not as it left them, the report is built in full.
"""

from __future__ import annotations

import itertools
import logging
import os
import zlib
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from comfywatchman import artifacts, stage_inputs
from comfywatchman.reporting import kept_whole, markdown, status_file, status_report
from comfywatchman.reporting.answers import Answers, lookup

logger = logging.getLogger(__name__)

FILE = "report_index.pack"
# Bump when what a contribution holds or how the whole is gathered from it changes.
FORMAT = 5
_OPEN = b'{"workflows":['
_BETWEEN = b'],"actions":['
# More changed workflows than this (and more than a tenth of them all) and the report is built in full.
MOST_CHANGED = 256


class NotIncremental(Exception):
    """The report cannot be made from the kept index this cycle (the caller builds it in full)."""


class Seeds:
    """The distinct seeds of node type and unreadable workflow actions, which contributions name by index
    (thousands of workflows need the same pack, each with the same seed)."""

    def __init__(self, table: list[Any]) -> None:
        self.table = table
        self._texts = {orjson.dumps(seed, option=orjson.OPT_SORT_KEYS): i for i, seed in enumerate(table)}

    def index(self, seed: Any) -> int:
        """Return the index of ``seed`` in the table (added when no equal seed was added before)."""
        text = orjson.dumps(seed, option=orjson.OPT_SORT_KEYS)
        found = self._texts.get(text)
        if found is None:
            found = self._texts[text] = len(self.table)
            self.table.append(seed)
        return found


def contribution(record: Mapping[str, Any], seeds: Seeds, row: markdown.Row | None = None) -> list[Any]:
    """Return what a workflow's record (after ``status_report.emit``) adds to the whole, in the compact form
    kept per workflow: name, path, readiness, resolved, last resolved (None when resolved: it is then the
    report's time), error, its missing files ``[folder, name, status, note, invalid_reason, lookup key]``,
    its seeds (node types, unreadable file: action id -> index in ``seeds``), its missing node types
    ``[action, class type, state]``, its page row's blockers and whether it misses something new, and for an
    unreadable workflow what it missed before. ``row``: the entry's ``markdown.row`` when the caller has it."""
    entry = record["entry"]
    files = [
        [m["folder"], m["name"], m["status"], f[0], f[2], lookup(m["name"])]
        for m, f in zip(entry["missing_models"], record["files"], strict=True)
    ]
    nodes = [[n["action"], n["class_type"], n["state"]] for n in entry["missing_nodes"]]
    row = row or markdown.row(entry)
    return [
        entry["workflow"],
        entry["path"],
        entry["readiness"],
        record["resolved"],
        None if record["resolved"] else entry["last_resolved_at"],
        entry["error"],
        files,
        {aid: seeds.index(seed) for aid, seed in record["seeds"].items()},
        nodes,
        list(row.blockers),
        row.newly_missing,
        record["missing"] if entry["error"] is not None else None,
    ]


def gather(
    aggregate: status_report.Aggregate,
    kept: Sequence[Any],
    dirs: Mapping[str, Any],
    seeds: list[Any],
    now_text: str,
    wanted: AbstractSet[str] | None = None,
    wanted_names: AbstractSet[str] | None = None,
) -> None:
    """Add one kept ``contribution`` to ``aggregate`` as ``Aggregate.add`` adds the record it was made of (a
    resolved workflow was last resolved now); ``dirs``: folder type -> where its files were looked for;
    ``seeds``: the table the contribution's seeds index. ``wanted``: the ids of the only actions whose
    workflows the caller needs (``Aggregate.pending`` holds no other; the counts, sets, rows and history are
    gathered whole), None for every action; ``wanted_names``: ``file_names(wanted)``, when given."""
    name, path, readiness, resolved, last_resolved, error, files, seeded, nodes, blockers, newly, _ = kept
    if resolved:
        last_resolved = now_text
    aggregate.counts["workflows"] += 1
    aggregate.counts[readiness] += 1
    # Whole lists at a time where a workflow's files only add to sets (two thousand workflows, ten files each).
    if files:
        aggregate.missing_models.update([(f[0], f[5]) for f in files])  # ``answers.key``, kept: not made again
        # Where a folder type's files were looked for is said once, when its first file's action is made.
        model_dirs = aggregate.model_dirs
        if not model_dirs.keys() >= {f[0] or "" for f in files}:
            for f in files:
                model_dirs.setdefault(f[0] or "", dirs[f[0] or ""])
        if not aggregate.has_downloads:
            aggregate.has_downloads = any(f[2] == "FOUND" for f in files)
        # No wanted action is one of these files' (the ids' text is not made: ten thousand files).
        if wanted_names is None or not wanted_names.isdisjoint([f[1] for f in files]):
            _file_actions(aggregate, name, files, wanted, wanted_names)
    if seeded and (wanted is None or not wanted.isdisjoint(seeded)):
        _seeded_actions(aggregate, name, seeded, seeds, wanted)
    if nodes:
        aggregate.missing_nodes.update([n[1] for n in nodes])
        if not aggregate.has_disabled:
            aggregate.has_disabled = any(n[2] == "disabled" for n in nodes)
        pending_of = aggregate.pending
        for aid, class_type, _ in nodes:
            if wanted is None or aid in wanted:
                pending_of[aid].node_types.append(class_type)
    aggregate.rows.append(markdown.Row(name, readiness, tuple(blockers), newly, error))
    aggregate.history[path] = {"last_resolved_at": last_resolved, "missing": history_missing(kept)}


def pending(
    aggregate: status_report.Aggregate,
    kept: Sequence[Any],
    seeds: list[Any],
    wanted: AbstractSet[str],
    wanted_names: AbstractSet[str],
) -> None:
    """Add one kept contribution's workflow to the pending actions among ``wanted`` alone (``gather`` does
    that and the rest; ``wanted_names``: ``file_names(wanted)``)."""
    name, files, seeded, nodes = kept[0], kept[6], kept[7], kept[8]
    if files and not wanted_names.isdisjoint([f[1] for f in files]):
        _file_actions(aggregate, name, files, wanted, wanted_names)
    if seeded and not wanted.isdisjoint(seeded):
        _seeded_actions(aggregate, name, seeded, seeds, wanted)
    pending_of = aggregate.pending
    for aid, class_type, _ in nodes:
        if aid in wanted:
            pending_of[aid].node_types.append(class_type)


def changed_actions(
    before: Iterable[Sequence[Any]], now: Iterable[Sequence[Any]], changed: AbstractSet[tuple[str | None, str]]
) -> set[str]:
    """Return the ids of the actions that workflows worked out again (``now``: their contributions, and
    ``before``: the kept ones of those and of the workflows gone) may have changed: those whose workflows, node
    types or seed one of them adds differ between ``before`` and ``now``, and those of the files whose answer
    changed (``changed``: their keys). An action none of them touches otherwise is the one the last report
    made, provided the workflows that stay keep their order (its seed is its first workflow's)."""
    old, new = _action_parts(before, changed), _action_parts(now, changed)
    return {part[0] for part in (old - new) + (new - old)} | old.dirty | new.dirty


class _Parts(Counter[tuple[Any, ...]]):
    """What contributions add to each action (``changed_actions``), and the actions of changed answers."""

    dirty: set[str]


def _action_parts(contributions: Iterable[Sequence[Any]], changed: AbstractSet[tuple[str | None, str]]) -> _Parts:
    parts = _Parts()
    parts.dirty = set()
    for kept in contributions:
        name = kept[0]
        for folder, file_name, status, note, invalid_reason, lookup_key in kept[6]:
            aid = status_report.model_action_id(status, folder, file_name)
            parts[(aid, name, folder, file_name, status, note, invalid_reason)] += 1
            if (folder, lookup_key) in changed:
                parts.dirty.add(aid)
        for aid, seed in kept[7].items():
            parts[(aid, name, seed)] += 1
        for aid, class_type, _ in kept[8]:
            parts[(aid, name, "node", class_type)] += 1
    return parts


def _file_actions(
    aggregate: status_report.Aggregate,
    name: str,
    files: Sequence[Any],
    wanted: Container[str] | None,
    wanted_names: Container[str] | None,
) -> None:
    """Add workflow ``name`` to the pending actions of its missing ``files`` (``gather``'s ``wanted``)."""
    pending_of = aggregate.pending
    for folder, file_name, status, note, invalid_reason, _ in files:
        if wanted_names is not None and file_name not in wanted_names:
            continue
        aid = status_report.model_action_id(status, folder, file_name)
        if wanted is not None and aid not in wanted:
            continue
        pending = pending_of.get(aid)
        if pending is None:
            model = {"name": file_name, "folder": folder, "note": note, "invalid_reason": invalid_reason}
            pending = pending_of[aid] = status_report._Pending({"model": model, "status": status})
        pending.workflows.append(name)


def _seeded_actions(
    aggregate: status_report.Aggregate,
    name: str,
    seeded: Mapping[str, int],
    seeds: list[Any],
    wanted: Container[str] | None,
) -> None:
    """Add workflow ``name`` to its pending node type and unreadable workflow actions (``gather``'s ``wanted``)."""
    pending_of = aggregate.pending
    for aid, seed in seeded.items():
        if wanted is not None and aid not in wanted:
            continue
        pending = pending_of.get(aid)
        if pending is None:
            pending = pending_of[aid] = status_report._Pending(seeds[seed])
        pending.workflows.append(name)


def history_of(kept: Sequence[Any], then: str) -> dict[str, Any]:
    """Return the readiness history entry the report made at ``then`` wrote for a kept contribution."""
    return {"last_resolved_at": then if kept[3] else kept[4], "missing": history_missing(kept)}


def history_missing(kept: Sequence[Any]) -> list[str]:
    """Return what a kept contribution's workflow misses as the readiness history keeps it
    (``status_report.missing_of``)."""
    if kept[5] is not None:
        return list(kept[11])
    return [f"model:{f[0]}:{f[1]}" for f in kept[6]] + [f"node:{n[1]}" for n in kept[8]]


def action_ids(kept: Sequence[Any]) -> set[str]:
    """Return the ids of the actions a kept contribution adds a workflow to."""
    files = {status_report.model_action_id(f[2], f[0], f[1]) for f in kept[6]}
    return files | set(kept[7]) | {n[0] for n in kept[8]}


def add_dirs(dirs: dict[str, Any] | None, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """Add to ``dirs`` where the record's missing files were looked for, per folder type; return None when a
    folder type was looked for in other places before (then the whole cannot be gathered from contributions:
    the first workflow in scan order would say where)."""
    if dirs is None:
        return None
    for missing, files in zip(record["entry"]["missing_models"], record["files"], strict=True):
        folder = missing["folder"] or ""
        if dirs.setdefault(folder, files[1]) != files[1]:
            return None
    return dirs


def line_of(line_digest: bytes, kept: Sequence[Any]) -> bytes:
    """Return the index's line of one workflow (its scan line's digest and its contribution)."""
    return line_digest + b" " + orjson.dumps(kept, option=orjson.OPT_APPEND_NEWLINE)


class Builder:
    """What a full report collects for the index while it is built (``WorkflowPass`` adds each workflow)."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.dirs: dict[str, Any] | None = {}
        self.seeds = Seeds([])
        # What the contributions add up to, and each one's page row and history entry (``kept_whole``).
        self.whole = kept_whole.Whole.empty(status_report.READINESS)
        self.rows: list[kept_whole.Row] = []
        self.entries: list[kept_whole.Entry] = []

    def add(self, line_digest: bytes, record: Mapping[str, Any], row: markdown.Row, missing: list[str]) -> None:
        """Keep the contribution of the workflow on a scan line with digest ``line_digest`` (``row``: its
        page row; ``missing``: its ``status_report.missing_of``)."""
        made = contribution(record, self.seeds, row)
        self.lines.append(line_of(line_digest, made))
        self.dirs = add_dirs(self.dirs, record)
        self.whole.add(made)
        self.rows.append((row.workflow, row.readiness, row.blockers, row.newly_missing, row.error))
        self.entries.append(kept_whole.entry_of(made, missing))

    def kept_whole(self) -> Parts:
        """Return what the contributions add up to and each one's row and history entry (``kept_whole``)."""
        return self.whole, self.rows, self.entries


# What the contributions add up to, and each one's page row and readiness history entry, in scan order.
Parts = tuple[kept_whole.Whole, list[kept_whole.Row], list[kept_whole.Entry]]


def save(
    state: Path,
    head: Mapping[str, Any],
    lines: Sequence[bytes],
    ranked: Sequence[Mapping[str, Any]],
    outputs: Sequence[Path],
    whole: bytes | None = None,
) -> None:
    """Write the index of a report just written: ``head`` (key, mark, now, flags, dirs, seeds), the workflows'
    ``lines`` (``line_of``), what they add up to (``whole``: ``kept_whole.Whole.dump``, when the caller has
    it) and the ranked actions, with ``outputs`` as they are now; remove it when ``head["dirs"]`` is None (the
    next report is built in full). A failure to write is logged (the next report is built in full)."""
    path = state / FILE
    if head["dirs"] is None:
        path.unlink(missing_ok=True)
        return
    whole = whole or b""
    document = {
        **head,
        "format": FORMAT,
        "outputs": {str(p): stage_inputs.stat_key(p) for p in outputs},
        "actions": len(ranked),
        # The whole right after this line, checked by its digest: marshal reads whatever bytes it is given.
        "whole": {"bytes": len(whole), "digest": whole_digest(whole)},
    }
    # A temp file renamed over the last one, not fsynced: a crash costs a full report, never a wrong one (a
    # torn file is not whole, and the outputs' stats must be the ones recorded here).
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb", buffering=1 << 20) as handle:
            handle.write(orjson.dumps(document) + b"\n")
            handle.write(whole)
            handle.writelines(lines)
            handle.write(b"end\n")
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("%s: not written (%s); the next report is built in full", path, exc)
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)


class Index:
    """A kept index read back (``load``): its first line and its workflows' lines, each parsed when asked."""

    def __init__(self, head: dict[str, Any], lines: list[bytes], whole: bytes = b"") -> None:
        self.head = head
        self.lines = lines
        self.seeds = Seeds(list(head["seeds"]))
        self.positions = {line[: line.index(b" ")]: position for position, line in enumerate(lines)}
        # What the lines' contributions add up to (``kept_whole.load`` reads it), empty when none was kept.
        self.whole = whole

    def contribution(self, position: int) -> list[Any]:
        """Return the contribution of the kept workflow at ``position``."""
        line = self.lines[position]
        kept: list[Any] = orjson.loads(memoryview(line)[line.index(b" ") + 1 :])
        return kept

    def find(self, path: str) -> list[Any] | None:
        """Return the kept contribution of the workflow at ``path``, or None (its lines are searched for the
        path's text, and only those that hold it are parsed)."""
        found = self.place_of(path)
        return None if found is None else found[1]

    def place_of(self, path: str) -> tuple[int, list[Any]] | None:
        """Return the place and the kept contribution of the workflow at ``path``, or None (``find``)."""
        text = orjson.dumps(path)
        for position, line in enumerate(self.lines):
            if text in line:
                kept = self.contribution(position)
                if kept[1] == path:
                    return position, kept
        return None


def load(state: Path, basis_key: str, outputs: Sequence[Path]) -> Index | None:
    """Return the kept index when it was made from the inputs ``basis_key`` stands for and the report's
    ``outputs`` are as it left them; else None (a broken or foreign file is logged and ignored)."""
    path = state / FILE
    data = artifacts.read_cache(path, "the report is built in full")
    if data is None:
        return None
    split = _split(data)
    if split is None:
        logger.warning("%s: not a whole index of this version; the report is built in full", path)
        return None
    head, whole, lines = split
    if head.get("key") != basis_key:
        logger.debug("%s: made from other inputs; the report is built in full", path)
        return None
    recorded = head.get("outputs")
    if not isinstance(recorded, dict) or any(recorded.get(str(p)) != stage_inputs.stat_key(p) for p in outputs):
        logger.debug("%s: the report is not as it was left; the report is built in full", path)
        return None
    return Index(head, lines, whole)


def whole_digest(whole: bytes) -> str:
    """Return what the whole kept in the index is checked by: a CRC tells a torn or damaged one (a cache's
    failures) at half sha256's time."""
    return f"crc32:{zlib.crc32(whole):08x}"


def _split(data: bytes) -> tuple[dict[str, Any], bytes, list[bytes]] | None:
    """Return the head, the whole (``kept_whole``) and the workflows' lines of an index's text, or None when
    it is not a whole index of this version (cut short, or its whole not the one its digest was made of)."""
    end = data.find(b"\n")
    try:
        head = orjson.loads(data[:end]) if end > 0 and data.endswith(b"\nend\n") else None
    except orjson.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT or not isinstance(head.get("whole"), dict):
        return None
    size = head["whole"].get("bytes")
    if not isinstance(size, int) or end + 1 + size > len(data):
        return None
    whole = data[end + 1 : end + 1 + size]
    if whole_digest(whole) != head["whole"].get("digest"):
        return None
    lines = data[end + 1 + size :].splitlines(keepends=True)
    return head, whole, lines[:-1]


class OldReport:
    """The last report's master_status.json (``status_file.Writer``'s layout) read forward once: its workflow
    lines, then its action lines, each asked for by its place in its list, in increasing order (the lines
    between are skipped). Raises NotIncremental when the file is not laid out that way or a line is asked
    for out of order."""

    def __init__(self, path: Path, workflows: int, actions: int) -> None:
        self.path = path
        self._counts = {"workflows": workflows, "actions": actions}
        try:
            self._handle = path.open("rb")
        except OSError as exc:
            raise NotIncremental(f"{path}: unreadable ({exc})") from None
        if not workflows or not actions or self._handle.readline() != _OPEN + b"\n":
            self._handle.close()
            raise NotIncremental(f"{path}: not the report the index was kept with")
        self._section, self._next = "workflows", 0
        # Where the action lines begin and each one's length, when the index says (``status_file.Copy``).
        self.action_lines: tuple[int, list[int]] | None = None

    def __enter__(self) -> OldReport:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def workflow(self, place: int) -> bytes:
        """Return the line of the workflow at ``place`` (from 0) without its comma."""
        return self._line("workflows", place)

    @property
    def source(self) -> BinaryIO:
        """Return the file read (``status_file.Writer.copy_workflows`` copies from it)."""
        handle: BinaryIO = self._handle
        return handle

    def line_at(self, start: int, size: int) -> bytes:
        """Return the ``size`` bytes at offset ``start`` (a line whose place the report's index kept), the file
        read on from where it was."""
        where = self._handle.tell()
        self._handle.seek(start)
        line: bytes = self._handle.read(size)
        self._handle.seek(where)
        if len(line) != size:
            raise NotIncremental(f"{self.path}: not the report the index was kept with")
        return line

    def skip_workflows(self, end: int) -> None:
        """Move on to the actions, the workflows' lines ending at offset ``end`` (none of them read); raise
        NotIncremental when the actions do not begin there."""
        if self._section != "workflows" or self._next:
            raise NotIncremental(f"{self.path}: its lines are not asked for in order")
        self._handle.seek(end)
        if self._handle.read(len(_BETWEEN) + 2) != b"\n" + _BETWEEN + b"\n":
            raise NotIncremental(f"{self.path}: not the report the index was kept with")
        self._section, self._next = "actions", 0

    def workflow_lines(self, size: int = 1 << 20) -> list[bytes]:
        """Return every workflow's line, each without its comma and newline, read a block at a time
        (``readlines``: two thousand lines at 2,000 workflows, one call each was most of their cost), and
        move on to the actions (``action_blocks``); raise NotIncremental as ``action`` does."""
        if self._section != "workflows" or self._next:
            raise NotIncremental(f"{self.path}: its lines are not asked for in order")
        count = self._counts["workflows"]
        lines: list[bytes] = []
        while len(lines) < count:
            batch = self._handle.readlines(size)
            if not batch:
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            lines += batch
        following = lines[count:]
        del lines[count:]
        if not following:
            following.append(self._handle.readline())
        # Every line but the list's last ends with its comma (a line holds no raw newline), then the actions.
        whole = all(map(bytes.endswith, lines[:-1], itertools.repeat(b",\n")))
        last = lines[-1]
        if not whole or not last.endswith(b"\n") or last.endswith(b",\n") or following[0] != _BETWEEN + b"\n":
            raise NotIncremental(f"{self.path}: not the report the index was kept with")
        # The lines read past the actions' opening line are given back (``action_blocks`` reads on from there).
        self._handle.seek(-sum(map(len, following[1:])), os.SEEK_CUR)
        self._section, self._next = "actions", 0
        lines[-1] = last[:-1] + b",\n"
        return [line[:-2] for line in lines]

    def action(self, place: int) -> bytes:
        """Return the line of the action at ``place`` (from 0) without its comma."""
        if self._section == "workflows":
            while self._next < self._counts["workflows"]:  # the workflows' lines not asked for
                self._handle.readline()
                self._next += 1
            if self._handle.readline() != _BETWEEN + b"\n":
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            self._section, self._next = "actions", 0
        return self._line("actions", place)

    def action_batches(self, size: int = 1 << 18) -> Iterator[list[bytes]]:
        """Yield every action's line in order, each without its comma, in lists of about ``size`` bytes (the
        workflows' lines not asked for are skipped); raise NotIncremental as ``action`` does."""
        for block, count in self.action_blocks(size):
            lines = block.split(b",\n")  # a line holds no raw newline
            if len(lines) != count:
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            yield lines

    def action_blocks(self, size: int = 1 << 18) -> Iterator[tuple[bytes, int]]:
        """Yield every action's line in order as blocks of about ``size`` bytes: the lines of a block as the
        file holds them, joined by their commas and newlines (the block's own last ones left out), and how many
        there are; raise NotIncremental as ``action`` does. The lines are read and checked a block at a time
        (``readlines``), not one call each: ten thousand at 2,000 workflows, forty thousand at 8,000."""
        if self._section == "actions" and self._next:
            raise NotIncremental(f"{self.path}: its lines are not asked for in order")
        count = self._counts["actions"]
        yield self.action(0), 1
        left = count - 1
        while left:
            batch = self._handle.readlines(size)
            if len(batch) > left:
                following, batch = batch[left], batch[:left]
            else:
                following = self._handle.readline() if len(batch) == left else b""
            left -= len(batch)
            if not batch or (not left and not following.startswith(b"]")):
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            last = batch[-1] if not left else None
            # Every line but the list's last ends with its comma (a line holds no raw newline).
            if not all(map(bytes.endswith, batch[:-1] if last is not None else batch, itertools.repeat(b",\n"))):
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            if last is not None and (not last.endswith(b"\n") or last.endswith(b",\n")):
                raise NotIncremental(f"{self.path}: not the report the index was kept with")
            block = b"".join(batch)
            self._next += len(batch)
            yield block[:-1] if last is not None else block[:-2], len(batch)
        if self._next != count:
            raise NotIncremental(f"{self.path}: not the report the index was kept with")

    def _line(self, section: str, place: int) -> bytes:
        if section != self._section or not self._next <= place < self._counts[section]:
            raise NotIncremental(f"{self.path}: its lines are not asked for in order")
        while self._next < place:
            self._handle.readline()
            self._next += 1
        line = self._handle.readline()
        self._next += 1
        if not line.endswith(b"\n") or line.startswith(b"]"):
            raise NotIncremental(f"{self.path}: not the report the index was kept with")
        return line[:-1].removesuffix(b",")


def changed_answers(index: Index, answers: Answers, searched: bytes | None) -> frozenset[tuple[str | None, str]]:
    """Return the keys of the answers that changed since the index was kept: none when search.json's answers
    are as they were (their ``mark`` is the index's), else the ones ``answers.load`` found changed since the
    answers the index was made with; raise NotIncremental when it cannot tell."""
    if searched is not None and index.head.get("mark") == searched.decode("ascii"):
        return frozenset()
    if answers.changed is None or answers.since is None or index.head.get("mark") != answers.since.decode("ascii"):
        raise NotIncremental("the search's answers changed in ways the kept answers cannot tell")
    return answers.changed


def file_names(ids: Iterable[str]) -> set[str]:
    """Return every name a missing file whose action id is among ``ids`` can have: each part of an id's
    ``FOLDER/NAME`` after a slash (``status_report.model_action_id``), whatever slashes the folder holds."""
    names = set()
    for aid in ids:
        rest = aid.partition(":")[2]
        while "/" in rest:
            rest = rest.partition("/")[2]
            names.add(rest)
    return names


def stands(
    kept: Sequence[Any], changed: frozenset[tuple[str | None, str]], folders: Container[str | None] | None = None
) -> bool:
    """Return True when a kept contribution is what its unchanged scan line makes this cycle: nothing newly
    missing (what it misses is now its history, so it would say nothing new) and no answer it depends on
    changed. ``folders``: the folder types of ``changed`` (worked out here when not given)."""
    if kept[10]:
        return False
    if not changed:
        return True
    # The folder type first: a file of another type has no changed answer (its name's key is not worked out).
    folders = {folder for folder, _ in changed} if folders is None else folders
    return not any(f[0] in folders and (f[0], f[5]) in changed for f in kept[6])


def walk(index: Index, digests: Sequence[bytes]) -> Iterator[tuple[int, int | None]]:
    """Yield (scan position, kept position or None) for this cycle's scan lines: the kept workflow whose
    scan line had the same digest, each kept one at most once."""
    used: set[int] = set()
    for position, line_digest in enumerate(digests):
        old = index.positions.get(line_digest)
        if old is not None and old not in used:
            used.add(old)
            yield position, old
        else:
            yield position, None


def reused_line(line: bytes, resolved: bool, then: str, now_text: str) -> bytes:
    """Return a kept workflow line of master_status.json for this report: a resolved workflow's
    ``last_resolved_at`` (the last report's time, ``then``) set to now. Compact JSON escapes quotes inside
    strings, so the key and its value can only be the entry's own."""
    if not resolved or then == now_text:
        return line
    old = b'"last_resolved_at":' + orjson.dumps(then)
    if old not in line:
        raise NotIncremental("a kept workflow line does not hold its last resolved time")
    return line.replace(old, b'"last_resolved_at":' + orjson.dumps(now_text), 1)


def encode_workflow(entry: Mapping[str, Any], path: Path) -> bytes:
    """Return a workflow entry's line of master_status.json, validated."""
    return status_file.part(entry, "workflow", f"{path} (workflow {entry['path']})")
