"""The search of a cycle where a few workflows changed, at the cost of what they touch: ``state/search_delta.bin``.

A missing file's result line in ``search.json`` is made of its query (the name and folder first met, its
declarations, the workflows that miss it, in scan.json's order) and of its answer, which with ``--offline`` and
only network backends (``fixed``) depends on the query alone. A query changes only where a workflow line of
scan.json that names the file came, went or changed. So the search records, beside search.json, the digest and
workflow of each scan.json line, the ``(folder, lookup key)`` of each result line and which result lines
are FOUND (their answers go into the download queue); the next search compares
scan.json's lines with it and, when few changed and the others kept their order, groups again only the files
the changed lines name (from the parts of the lines that name them: the pack), answers those again (reusing the
last answer of an unchanged query), and copies every other result line as it was. It records too which FOUND
lines made a download task, and the model cache's folders those tasks' target paths came from: the task of a
line copied as it was is then the one in the last download queue (its folder that of its query, the folders
the same), not made again from the line.

The file is a cache, safe to lose: it is used only when it goes with the search.json and download queue on disk
(their size and mtime), the answers' basis and the settings; anything else (a torn or foreign file, another
layout, many changes, a part the pack cannot give) means the full search. Anything kept gives the bytes a full
search gives: the test suite compares the two.
"""

from __future__ import annotations

import bisect
import itertools
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, stage_inputs
from comfywatchman.search import reuse
from comfywatchman.search.base import Declaration, ModelQuery, SearchResult, Status
from comfywatchman.stages import cache_files
from comfywatchman.stages.scan_parts import ScanParts

logger = logging.getLogger(__name__)

#: Bump when what the file holds, the search's result lines or the download queue's tasks change meaning.
TAG = b"search-delta-3"
#: More changed scan.json lines than this share of them (or than ``MIN_CHANGES``): the full search.
CHANGED_SHARE = 0.05
MIN_CHANGES = 16

Qid = tuple[str | None, str]  # a missing file: its folder and lookup key


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class Memo:
    """What the next search needs to search only what changed (see the module)."""

    # No __slots__: the file is the instance's __dict__ (``to_bytes``), its keys in the order __init__ sets them.
    basis: str
    count_inactive: bool
    outputs: list[list[int] | None]  # the stat of search.json and of the download queue it goes with
    lines: list[list[str]]  # [digest, workflow path] of each workflow line of scan.json, in order
    queries: list[list[Any]]  # [folder, lookup key] of each result line of search.json, in order
    #: The indexes of the result lines whose status is FOUND, in order (search.json is not searched for them).
    found: list[int]
    #: The indexes of the FOUND lines that made a task of the download queue, in the queue's order.
    tasks: list[int]
    #: The digest of the model cache's folders the queue's target paths were made from (``folders_digest``).
    folders: str

    def __init__(
        self,
        basis: str,
        count_inactive: bool,
        outputs: list[list[int] | None],
        lines: list[list[str]],
        queries: list[list[Any]],
        found: list[int] | None = None,
        tasks: list[int] | None = None,
        folders: str = "",
    ) -> None:
        self.basis = basis
        self.count_inactive = count_inactive
        self.outputs = outputs
        self.lines = lines
        self.queries = queries
        self.found = [] if found is None else found
        self.tasks = [] if tasks is None else tasks
        self.folders = folders

    def to_bytes(self) -> bytes:
        """Return the file's content: the tag, then the memo as one line of JSON."""
        return TAG + b"\n" + orjson.dumps(self.__dict__) + b"\n"

    @classmethod
    def load(cls, path: Path) -> Memo | None:
        """Return the memo at ``path``; None when there is none, or it is torn or of another format."""
        data = artifacts.read_cache(path, "the search runs in full")
        if data is None:
            return None
        tag, _, body = data.partition(b"\n")
        if tag != TAG:
            return None
        try:
            data = orjson.loads(body)
            memo = cls(data["basis"], data["count_inactive"], data["outputs"], data["lines"], data["queries"])
            memo.found = _found_indexes(data["found"], len(memo.queries))
            memo.tasks = _found_indexes(data["tasks"], len(memo.queries))
            if not set(memo.tasks) <= set(memo.found):
                raise ValueError("its queued lines are not FOUND lines")
            memo.folders = data["folders"]
            if not isinstance(memo.folders, str):
                raise TypeError("its folders' digest is not text")
            return memo
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            logger.warning("%s: not a search memo (%s); the search runs in full", path, exc)
            return None


def _found_indexes(found: Any, count: int) -> list[int]:
    """Return ``found`` when it is a list of result line indexes (of ``count``) in order; else raise
    ValueError."""
    if not isinstance(found, list) or (found and set(map(type, found)) != {int}):
        raise ValueError("its FOUND lines are not indexes")
    if found and (found[0] < 0 or found[-1] >= count or any(a >= b for a, b in itertools.pairwise(found))):
        raise ValueError("its FOUND lines are not indexes of its lines in order")
    return found


def save(path: Path, memo: Memo) -> None:
    """Write ``memo`` to ``path`` atomically (a failure costs the next search a full run, with a warning)."""
    try:
        cache_files.write_cache(path, memo.to_bytes())
    except OSError as exc:
        logger.warning("%s: cannot be written (%s); the next search runs in full", path, exc)


def folders_digest(model_cache: Mapping[str, Any]) -> str:
    """Return the digest of the model cache's folders (``search.folder_paths``) download tasks' target paths are
    made from."""
    return cache_files.checksum(orjson.dumps(model_cache, option=orjson.OPT_SORT_KEYS)).decode("ascii")


def kept_tasks(memo: Memo, queue_path: Path, model_cache: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Return the tasks of the download queue at ``queue_path`` by the index of the FOUND line that made each,
    when the memo goes with it (``memo.outputs``, checked by the caller) and its target paths were made from
    the folders of ``model_cache``; else none (every task is made again)."""
    if memo.folders != folders_digest(model_cache):
        return {}
    try:
        tasks = orjson.loads(queue_path.read_bytes())["tasks"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        logger.debug("search: the last download queue not reused: %s", exc)
        return {}
    if not isinstance(tasks, list) or len(tasks) != len(memo.tasks):
        return {}
    return dict(zip(memo.tasks, tasks, strict=True))


def sort_key(qid: Qid) -> tuple[str, str]:
    """Return where a missing file's line goes in search.json (the order of ``group_missing``)."""
    return (qid[0] or "~", qid[1])


class Delta:
    """The result lines of a search made from the last one: their texts, query ids and reuse keys in order,
    how many there are of each status, and what ``download_queue`` needs."""

    __slots__ = (
        "counts", "found", "found_lines", "fresh", "keys", "origins", "others", "paths", "qids", "texts", "touched",
    )  # fmt: skip

    texts: list[bytes]  # UTF-8, as search.json holds them
    counts: dict[str, int]
    qids: list[Qid]
    keys: list[str | None]
    #: The FOUND answers, in order, each with its query, or the download task the last queue holds for it.
    found: list[tuple[SearchResult, ModelQuery] | dict[str, Any]]
    fresh: list[SearchResult]
    touched: int
    others: Callable[[], dict[Qid, int]] | None
    paths: list[str]  # the workflow of each line of scan.json, in order
    found_lines: list[int]  # the indexes of ``texts`` whose status is FOUND
    origins: list[int | None]  # each text's index in the last search.json, or None

    def __init__(
        self,
        texts: list[bytes] | None = None,
        counts: dict[str, int] | None = None,
        qids: list[Qid] | None = None,
        keys: list[str | None] | None = None,
        found: list[tuple[SearchResult, ModelQuery] | dict[str, Any]] | None = None,
        fresh: list[SearchResult] | None = None,
        touched: int = 0,
        others: Callable[[], dict[Qid, int]] | None = None,
        paths: list[str] | None = None,
        found_lines: list[int] | None = None,
        origins: list[int | None] | None = None,
    ) -> None:
        self.texts = [] if texts is None else texts
        self.counts = {} if counts is None else counts
        self.qids = [] if qids is None else qids
        self.keys = [] if keys is None else keys
        self.found = [] if found is None else found
        self.fresh = [] if fresh is None else fresh
        self.touched, self.others = touched, others
        self.paths = [] if paths is None else paths
        self.found_lines = [] if found_lines is None else found_lines
        self.origins = [] if origins is None else origins


def _changes(memo: Memo, digests: list[bytes]) -> tuple[list[bytes], list[int]] | None:
    """Return the digests of the last lines gone and the indexes of the lines new this time, or None when
    the lines that stayed are not in the same order, a line is there twice, or too many changed."""
    now = [d.decode("ascii") for d in digests]
    before = [d for d, _ in memo.lines]
    now_set, before_set = set(now), set(before)
    if len(now_set) != len(now) or len(before_set) != len(before):
        return None
    gone = [d for d in before if d not in now_set]
    new = [i for i, d in enumerate(now) if d not in before_set]
    if len(gone) + len(new) > max(MIN_CHANGES, CHANGED_SHARE * len(now)):
        return None
    if [d for d in now if d in before_set] != [d for d in before if d in now_set]:
        return None
    return [d.encode("ascii") for d in gone], new


def _rows(part: Any, qid: Qid, count_inactive: bool) -> list[list[Any]]:
    """Return the rows of a search part (``missing_part``) that group under ``qid``."""
    return [row for row in part[1] if (row[0], row[4]) == qid and (row[2] or count_inactive)]


class _NoPart(Exception):
    """A part the search needs is not in the pack (or the memo does not fit scan.json): search in full."""


class _Lines:
    """The last search.json, one result line at a time (its bytes, without the separating comma), and its
    counts. Bytes, not text: the lines kept are written back as they are, never decoded (only the few a
    search looks into are)."""

    def __init__(self, path: Path, count: int, found: list[int]) -> None:
        data = path.read_bytes()
        raw = data.split(b"\n")  # split as it is: a copy without the last newline is megabytes copied
        if raw[-1] == b"":
            raw.pop()
        if len(raw) != count + 2 or not raw[-1].startswith(b"]"):
            raise ValueError("not the layout recorded")
        self.lines = [line.removesuffix(b",") for line in raw[1:-1]]
        self.found = found  # the FOUND lines, from the memo that goes with this very file
        # The head ends the first line with the list's opening bracket: closed, it is the document bar its list.
        counts = orjson.loads(raw[0] + b"]}")["counts"]
        if not isinstance(counts, dict):
            raise ValueError("no counts")
        self.counts: dict[str, int] = counts

    def item(self, index: int) -> dict[str, Any]:
        data: dict[str, Any] = orjson.loads(self.lines[index])
        return data

    def text(self, index: int) -> str:
        """Return the line at ``index`` as text."""
        return self.lines[index].decode("utf-8")


def search_again(
    memo: Memo,
    parts: ScanParts,
    digests: list[bytes],
    search_path: Path,
    keys_before: list[Any],
    answer: Callable[[ModelQuery, str, Mapping[str, str]], tuple[str, str, SearchResult | None]],
    tasks_before: Mapping[int, dict[str, Any]] | None = None,
) -> Delta | None:
    """Return the result lines of this search made from the last one (see the module), or None when the full
    search must run. ``answer(query, key, kept)``: the text, status and (when made now) result of a query,
    ``kept`` holding the last answer texts (``reuse.without_workflows``) by reuse key. ``tasks_before``: the
    last download queue's tasks by FOUND line (``kept_tasks``)."""
    changes = _changes(memo, digests)
    if changes is None or len(keys_before) != len(memo.queries):
        return None
    gone, new = changes
    try:
        last = _Lines(search_path, len(memo.queries), memo.found)
    except (OSError, ValueError):
        return None
    paths_before = {d.encode("ascii"): p for d, p in memo.lines}
    gone_parts = [parts.get(d) for d in gone]
    new_parts = {digests[i]: parts.get(digests[i]) for i in new}
    if any(p is None for p in gone_parts) or any(p is None for p in new_parts.values()):
        return None
    # Where each workflow is now, and its line's digest.
    path_of = [paths_before.get(d) or new_parts[d][0] for d in digests]
    position = {path: i for i, path in enumerate(path_of)}
    if len(position) != len(path_of):
        return None
    touched = {(row[0], row[4]) for part in [*gone_parts, *new_parts.values()] for row in part[1]}
    index_before = {(q[0], q[1]): i for i, q in enumerate(memo.queries)}
    gone_paths = {p[0] for p in gone_parts}
    queries: dict[Qid, ModelQuery] = {}
    for qid in touched:
        try:
            query = _regroup(qid, index_before.get(qid), last, gone_paths, new_parts, position, digests, parts, memo)
        except _NoPart as exc:
            logger.debug("search: the parts of %s cannot be had; searched in full", exc)
            return None
        if query is not None:
            queries[qid] = query
    delta = _merge(memo, last, keys_before, touched, queries, index_before, answer, tasks_before or {})
    delta.paths = path_of
    return delta


def _regroup(
    qid: Qid,
    before: int | None,
    last: _Lines,
    gone_paths: set[str],
    new_parts: Mapping[bytes, Any],
    position: Mapping[str, int],
    digests: list[bytes],
    parts: ScanParts,
    memo: Memo,
) -> ModelQuery | None:
    """Return the query of ``qid`` now, grouped from the parts of the workflows that name it (None when none
    does any more). Raise _NoPart when a part cannot be had."""
    workflows = set(last.item(before)["workflows"]) - gone_paths if before is not None else set()
    workflows |= {part[0] for part in new_parts.values() if _rows(part, qid, memo.count_inactive)}
    if not workflows:
        return None
    if any(path not in position for path in workflows):
        raise _NoPart(qid)
    name: str | None = None
    declarations: dict[tuple[Any, ...], None] = {}
    ordered = sorted(workflows, key=position.__getitem__)
    for path in ordered:
        digest = digests[position[path]]
        part = new_parts.get(digest) or parts.get(digest)
        if part is None:
            raise _NoPart(qid)
        for row in _rows(part, qid, memo.count_inactive):
            name = row[1] if name is None else name
            for declared in row[3]:
                declarations[tuple(declared)] = None
    if name is None:
        raise _NoPart(qid)
    return ModelQuery(name, qid[0], tuple(Declaration(*d) for d in declarations), tuple(ordered))


def _merge(
    memo: Memo,
    last: _Lines,
    keys_before: list[Any],
    touched: set[Qid],
    queries: Mapping[Qid, ModelQuery],
    index_before: Mapping[Qid, int],
    answer: Callable[[ModelQuery, str, Mapping[str, str]], tuple[str, str, SearchResult | None]],
    tasks_before: Mapping[int, dict[str, Any]],
) -> Delta:
    """Return the result lines: the last ones of the untouched files as they were, the touched ones made
    again, in search.json's order. The lines kept are copied a run at a time (list slices): a line made again
    goes where ``group_missing``'s order puts it, after every last line that sorts before it or with it."""
    delta = Delta(touched=len(touched), counts=dict(last.counts))
    for qid in touched:  # the statuses of the lines made again are counted as they are made
        if qid in index_before:
            delta.counts[reuse.status_of(last.text(index_before[qid]))] -= 1
    made: dict[Qid, tuple[str, str, str, ModelQuery, SearchResult | None]] = {}
    kept: dict[str, str] = {}
    for qid, query in queries.items():
        key = reuse.query_key(query)
        at = index_before.get(qid)
        if at is not None and keys_before[at] == key:
            prefix = reuse.without_workflows(last.text(at))
            if prefix is not None:
                kept = {key: prefix}
        text, status, result = answer(query, key, kept)
        kept = {}
        made[qid] = (text, status, key, query, result)
    dropped = set(index_before[qid] for qid in touched if qid in index_before)
    copy = _Copy(delta, memo, last, keys_before, sorted(dropped))
    made_at: dict[int, tuple[str, str, str, ModelQuery, SearchResult | None]] = {}
    for qid in sorted(made, key=sort_key):
        copy.up_to(bisect.bisect_right(memo.queries, sort_key(qid), key=_row_key))
        made_at[len(delta.texts)] = made[qid]
        _add_made(delta, qid, made[qid])
    copy.up_to(len(memo.queries))
    _found(delta, made_at, copy.found_at, tasks_before)
    made_found = [at for at, made in made_at.items() if made[1] == Status.FOUND.value]
    delta.found_lines = sorted(copy.found_at + made_found)
    qids, texts = list(delta.qids), list(delta.texts)  # the stage empties ``texts`` once they are written
    delta.others = lambda: {qid: len(orjson.loads(text)["workflows"]) for qid, text in zip(qids, texts, strict=True)}
    return delta


def _row_key(row: list[Any]) -> tuple[str, str]:
    return sort_key((row[0], row[1]))


class _Copy:
    """Copies the last result lines into ``delta`` as they were (counted already), a run at a time, bar those
    ``dropped`` (made again), noting where the kept lines with the words of a FOUND status land."""

    def __init__(self, delta: Delta, memo: Memo, last: _Lines, keys_before: list[Any], dropped: list[int]) -> None:
        self.delta, self.memo, self.last, self.keys_before, self.dropped = delta, memo, last, keys_before, dropped
        self.start = 0
        self.found_at: list[int] = []  # the places in ``delta`` of kept lines whose status is FOUND

    def up_to(self, stop: int) -> None:
        """Add the last lines from where the last call stopped up to ``stop`` (not included)."""
        dropped = self.dropped
        for at in dropped[bisect.bisect_left(dropped, self.start) : bisect.bisect_left(dropped, stop)]:
            self._run(self.start, at)
            self.start = at + 1
        self._run(self.start, stop)
        self.start = max(self.start, stop)

    def _run(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        delta, found = self.delta, self.last.found
        shift = len(delta.texts) - start
        self.found_at += [i + shift for i in found[bisect.bisect_left(found, start) : bisect.bisect_left(found, stop)]]
        delta.texts += self.last.lines[start:stop]
        delta.origins += range(start, stop)
        delta.qids += [(row[0], row[1]) for row in self.memo.queries[start:stop]]
        delta.keys += self.keys_before[start:stop]


def _found(
    delta: Delta,
    made_at: Mapping[int, tuple[str, str, str, ModelQuery, SearchResult | None]],
    kept_at: list[int],
    tasks_before: Mapping[int, dict[str, Any]],
) -> None:
    """Gather the FOUND answers of the result lines, in their order (``download_queue``): those made now as
    they were made, the kept ones read from their lines (``kept_at``: those that hold the words; one with
    them may hold them in an attempt only), or, for a kept line whose task the last queue holds and whose
    answer is in its query's folder (the task's count of workflows blocked is then its line's), that task."""
    for at in sorted((*made_at, *kept_at)):
        made = made_at.get(at)
        if made is not None:
            text, status, _, query, result = made
            if status == Status.FOUND.value:
                found = result if result is not None else SearchResult.from_json(orjson.loads(text))
                delta.found.append((found, query))
            continue
        origin = delta.origins[at]
        task = tasks_before.get(origin) if origin is not None else None
        if task is not None and task.get("folder") == delta.qids[at][0]:
            delta.found.append(task)
            continue
        item = orjson.loads(delta.texts[at])
        if item["status"] == Status.FOUND.value:
            query = ModelQuery(item["name"], delta.qids[at][0], (), tuple(item["workflows"]))
            delta.found.append((SearchResult.from_json(item), query))


def _add_made(delta: Delta, qid: Qid, made: tuple[str, str, str, ModelQuery, SearchResult | None]) -> None:
    text, status, key, _, result = made
    delta.texts.append(text.encode("utf-8"))
    delta.origins.append(None)
    delta.counts[status] = delta.counts.get(status, 0) + 1
    delta.qids.append(qid)
    delta.keys.append(key)
    if result is not None:
        delta.fresh.append(result)


def write_results(path: Path, head: dict[str, Any], lines: list[bytes], schema_name: str) -> artifacts.Settling:
    """Write search.json: ``head`` with its list ``results`` holding ``lines`` (result texts, UTF-8, validated
    where they were made), the very bytes ``artifacts.write_assembled`` writes for them as text, without
    decoding the lines kept or encoding them again. Return the write with its fsync running (megabytes: the
    search makes its download queue meanwhile); the caller settles it (``artifacts.Settling``)."""
    if head.get("results") != []:
        raise ValueError("write_results: 'results' must be an empty list in the head")
    artifacts.validate(head, schema_name, f"{path} (about to be written)")
    text = artifacts.dumps(head, indent=None).encode("utf-8")
    marker = b'"results":[]'
    if text.count(marker) != 1:
        raise ValueError("write_results: 'results' is not a key of the head alone")
    cut = text.index(marker) + len(marker) - 1
    body = (b"\n", b",\n".join(lines), b"\n") if lines else ()
    return artifacts.Settling(path, text[:cut], *body, text[cut:])


def memo_of(
    basis: str,
    count_inactive: bool,
    outputs: list[Path],
    digests: list[bytes],
    paths: list[str],
    qids: list[Qid],
    found: list[int],
    tasks: list[int],
    model_cache: Mapping[str, Any],
) -> Memo:
    """Return the memo of a search just written (``outputs``: search.json and the download queue; ``found``:
    the indexes of its result lines whose status is FOUND; ``tasks``: those that made a task of the queue, in
    its order; ``model_cache``: the folders its target paths were made from)."""
    return Memo(
        basis,
        count_inactive,
        [stage_inputs.stat_key(p) for p in outputs],
        [[d.decode("ascii"), p] for d, p in zip(digests, paths, strict=True)],
        [[q[0], q[1]] for q in qids],
        found,
        tasks,
        folders_digest(model_cache),
    )
