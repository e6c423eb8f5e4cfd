"""What the search answered about each missing file, kept compact for the report: only the fields the report
shows, keyed by (folder type, lookup key of the name), with a digest per file so a workflow's part of the
report can be reused while the answers it depends on are unchanged (``parts``).

The report keeps them (``KEPT``) with the ``mark`` of the search.json they are of. A search that writes
search.json in full where the report keeps none (a first cycle) makes them as it makes each result, validated,
and writes them there (``Handed``, ``hand_over``): the first report then parses no line of search.json."""

from __future__ import annotations

import hashlib
import itertools
import logging
import marshal
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, resources
from comfywatchman.errors import ArtifactError
from comfywatchman.stages import cache_files, search_digests
from comfywatchman.stages.scan_digests import file_key
from comfywatchman.workflow import names

logger = logging.getLogger(__name__)

Key = tuple[str | None, str]
KEPT = "report_answers.pack"  # the answers as the report keeps them, with the mark of the search.json they are of
CANDIDATE_FIELDS = ("name", "source", "url", "reason", "size")
# What a missing file that no search answered shows (not searched yet).
NO_ANSWER: Mapping[str, Any] = {
    "status": "NOT_SEARCHED",
    "source": "scan",
    "url": None,
    "evidence": "none",
    "reason": "",
    "candidates": [],
    "size": None,
}
_NO_DIGEST = b"-"


@lru_cache(maxsize=1 << 17)
def lookup(name: str) -> str:
    """Return ``names.lookup_key(name)``, remembered: the report asks for the same names tens of thousands of
    times (every workflow that misses a file, then its action)."""
    return names.lookup_key(name)


def key(folder: str | None, name: str) -> Key:
    """Return the key a file's answer is kept under: its folder type and the lookup key of its name."""
    return folder, lookup(name)


def access(result: Mapping[str, Any]) -> tuple[str | None, str]:
    """Return ``(page, what to do)`` for a NEEDS_ACCESS result: the page where access is granted, and the
    instruction naming the token to set (by name, never its value)."""
    grant = result.get("details", {}).get("access") or {}
    page, token = grant.get("page"), grant.get("token", "the service's token")
    why = grant.get("why") or result.get("reason", "access needed")
    where = f"get access at {page}" if page else "get access to it"
    return page, f"{why}: {where}, then set {token} to that account's token"


def project(result: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the report keeps of one search result: status, who answered, the URL (for NEEDS_ACCESS the
    page where access is granted), the evidence, why (for NEEDS_ACCESS what to do), the candidates (the
    fields a person compares) and the size."""
    status = result["status"]
    needs_access = status == "NEEDS_ACCESS"
    page, todo = access(result) if needs_access else (None, "")
    return {
        "status": status,
        "source": result.get("source", "scan"),
        "url": page if needs_access else result.get("url"),
        "evidence": result.get("evidence", "none"),
        "reason": todo if needs_access else result.get("reason", ""),
        "candidates": [{k: c.get(k) for k in CANDIDATE_FIELDS} for c in result.get("candidates", [])],
        "size": result.get("size"),
    }


def is_gated(result: Mapping[str, Any]) -> bool:
    """Return True when the result's source says a token is needed to download it (a gated repository)."""
    details = result.get("details") or {}
    return bool(details.get("gated") or (details.get("huggingface") or {}).get("gated"))


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class Answers:
    """The search's answers for the report: projections by key, the gated files, and the search's facts."""

    __slots__ = (
        "_digests", "_keys", "_places", "_table", "_table_digests", "changed", "gated", "model_list", "offline",
        "results", "since", "uncertain",
    )  # fmt: skip

    results: dict[Key, dict[str, Any]]
    gated: frozenset[Key]
    uncertain: int
    offline: bool
    model_list: str | None
    _table: list[dict[str, Any]]
    # Per result, in order: its key and its answer's index in ``_table`` (a key's last result is its answer);
    # the digest of each of ``_table``; and per key the digest ``digest`` gives, made when first asked for.
    _keys: list[Key]
    _places: list[int]
    _table_digests: list[bytes]
    _digests: dict[Key, bytes] | None
    # The keys whose result is not as it was in the search.json whose ``mark`` is ``since`` (the one the
    # report's kept answers were made from), when ``load`` could tell.
    since: bytes | None
    changed: frozenset[Key] | None

    def __init__(
        self,
        results: dict[Key, dict[str, Any]] | None = None,
        gated: frozenset[Key] = frozenset(),
        uncertain: int = 0,
        offline: bool = False,
        model_list: str | None = None,
        *,
        since: bytes | None = None,
        changed: frozenset[Key] | None = None,
    ) -> None:
        self.results = {} if results is None else results
        self.gated, self.uncertain, self.offline, self.model_list = gated, uncertain, offline, model_list
        self._table, self._keys, self._places, self._table_digests = [], [], [], []
        self._digests = None
        self.since, self.changed = since, changed

    def get(self, found: Key) -> Mapping[str, Any] | None:
        """Return the answer kept under ``found``, or None."""
        return self.results.get(found)

    def sized(self) -> dict[Key, int]:
        """Return the size of each key's answer that is FOUND with a size known (a few hundred of ten thousand
        answers: the report sums the sizes of the files its workflows miss)."""
        known = [bool(a["status"] == "FOUND" and a.get("size")) for a in self._table]
        sized: dict[Key, int] = {}
        for found in itertools.compress(self._keys, map(known.__getitem__, self._places)):
            answer = self.results[found]  # the key's last result's (another of its results may be FOUND)
            if answer["status"] == "FOUND" and answer.get("size"):
                sized[found] = answer["size"]
        return sized

    def digest(self, found: Key) -> bytes:
        """Return a short digest of what the report shows of the answer under ``found`` (and whether its
        download needs a token), the same in every cycle the answer is the same."""
        return self._digest_table().get(found, _NO_DIGEST)

    def digests(self, keys: Sequence[Key]) -> bytes:
        """Return ``digest`` of each of ``keys``, one after the other."""
        return b"".join(map(self._digest_table().get, keys, itertools.repeat(_NO_DIGEST, len(keys))))

    def _digest_table(self) -> dict[Key, bytes]:
        """Return each key's ``digest``, made when first asked for (by a full report only)."""
        if self._digests is None:
            self._digests = dict(zip(self._keys, map(self._table_digests.__getitem__, self._places), strict=True))
            for gated in self.gated:
                self._digests[gated] += b"g"
        return self._digests

    def index(self) -> dict[Key, int]:
        """Return per key the index of its answer in ``_table`` (its last result's), in the keys' first order."""
        return dict(zip(self._keys, self._places, strict=True))


def from_results(results: Iterable[Mapping[str, Any]], offline: bool = False, model_list: str | None = None) -> Answers:
    """Return the Answers of search results (search.json's ``results``). Equal answers are kept once (offline,
    thousands of files share one NOT_SEARCHED answer), so what is kept grows with the distinct answers."""
    shared: dict[bytes, int] = {}
    made = _Kept.empty(offline, model_list)
    for result in results:
        made.add("", key(result["type"], result["name"]), _share(shared, made.table, project(result)), result)
    return made.answers()


def _answer_digest(answer: Mapping[str, Any]) -> bytes:
    """Return the short digest of one answer (``Answers.digest`` without the gated mark)."""
    return hashlib.blake2b(orjson.dumps(answer, option=orjson.OPT_SORT_KEYS), digest_size=12).digest()


def _assemble(kept: _Kept) -> Answers:
    """Return the Answers ``kept`` holds: per key its result's answer (the last result's, when two results have
    the same key), gated when one of its results is. Built by whole lists (no loop in Python over the results:
    ten thousand of them at 2,000 workflows)."""
    table = kept.table
    if kept.table_digests is None or len(kept.table_digests) != len(table):
        kept.table_digests = [_answer_digest(a) for a in table]
    keys = list(zip(kept.folders, kept.lookups, strict=True))
    answers = Answers(offline=kept.offline, model_list=kept.model_list, uncertain=kept.uncertain)
    answers.gated = frozenset(itertools.compress(keys, kept.gated))
    answers._table, answers._keys, answers._places = table, keys, kept.index
    answers._table_digests = kept.table_digests
    # One dict of ten thousand keys (``digest``'s is made when asked for): the last result of a key wins.
    answers.results = dict(zip(keys, map(table.__getitem__, kept.index), strict=True))
    return answers


@cache
def schema_definitions(schema_name: str) -> frozenset[str]:
    """Return the names under ``$defs`` of the schema ``schema_name``."""
    text = (resources.SCHEMAS_DIR / f"{schema_name}.schema.json").read_bytes()
    return frozenset(orjson.loads(text).get("$defs", {}))


def _results(path: Path) -> tuple[dict[str, Any], Iterator[Any]]:
    """Return search.json's head and its results one at a time (a line each when it is written that way and
    its schema states a result's definition; else read whole)."""
    if "result" in schema_definitions("search"):
        document = artifacts.Assembled(path, "results", "search", "result")
        return document.head, document.items()
    whole = artifacts.read(path, "search")
    return whole, iter(whole.pop("results"))


_HEAD_FLAG = re.compile(rb'"(offline|model_list)": ?(true|false|null|"(?:[^"\\]|\\.)*")')
_OPENER = b'"results":['


def mark(path: Path) -> bytes | None:
    """Return a digest of what the report takes from the search.json at ``path``: its results, whether it
    ran offline and the model list it used; not when it was written nor its request counts (which change
    while the answers stay). None when it cannot be read.

    For a search.json of one result per line, it is the digest of the flags, of each result line's digest
    (``search_digests.line_digest``) and of the line closing the list: the search's record of this very file
    (``search_digests``) gives the lines' digests, so the file is not read whole; without a record the lines
    are hashed, to the same digest."""
    try:
        with path.open("rb") as handle:
            first = handle.readline()
            if not first.rstrip(b"\n").endswith(_OPENER):
                return _whole_mark(first + handle.read())
            recorded = _recorded(path)
            if recorded is not None:
                return _lines_mark(first, recorded, artifacts.last_line(handle))
            described = file_key(path)
            digests, closing = _hashed(handle)
    except OSError:
        return None
    if closing is None:
        return _whole_mark(path.read_bytes())
    if described is not None:  # ``load`` takes them as the search's record (of this very file)
        _HASHED.clear()
        _HASHED[str(path)] = (described, digests)
    return _lines_mark(first, digests, closing)


def _whole_mark(data: bytes) -> bytes:
    """``mark`` of a search.json in another layout, read whole."""
    cut = data.find(b'"results":')
    if cut < 0:
        return hashlib.blake2b(data, digest_size=16).hexdigest().encode("ascii")
    h = hashlib.blake2b(_flags(data[:cut]), digest_size=16)
    h.update(memoryview(data)[cut:])
    return h.hexdigest().encode("ascii")


def _flags(head: bytes) -> bytes:
    """Return what ``mark`` takes of search.json's text before its results: the offline flag and model list."""
    flags = sorted(_HEAD_FLAG.findall(head))
    return orjson.dumps([[k.decode(), v.decode()] for k, v in flags])


def _lines_mark(first: bytes, digests: Sequence[str], closing: bytes) -> bytes:
    """``mark`` of a search.json of one result per line: its first line, its result lines' digests, its last
    line."""
    h = hashlib.blake2b(_flags(first), digest_size=16)
    h.update("\n".join(digests).encode("ascii"))
    h.update(b"\n" + closing)
    return h.hexdigest().encode("ascii")


def _hashed(handle: Any) -> tuple[list[str], bytes | None]:
    """Return the digest of each result line left in ``handle`` (its first line read) and the line that
    closes the list when it is the file's last line (else None: not the layout ``mark`` digests by lines)."""
    digests: list[str] = []
    for raw in handle:
        if raw.startswith(b"]"):
            rest = handle.read()
            return digests, raw.rstrip(b"\n") if not rest.strip(b"\n") else None
        digests.append(search_digests.line_digest(raw.rstrip(b"\n").removesuffix(b",")))
    return digests, None


# The search's record of search.json's lines (``search_digests.load``), read once per report: the files it was
# read for (search.json and the record, their ``file_key``) and the digests.
_RECORD: dict[str, tuple[list[Any], list[str]]] = {}


# The digests ``mark`` worked out of search.json's lines when it had no record: the file (its ``file_key``) and
# the digests, for ``load``.
_HASHED: dict[str, tuple[list[int], list[str]]] = {}


def _hashed_before(path: Path) -> list[str] | None:
    """Return the digests of search.json's lines ``mark`` worked out, while the file is unchanged, or None."""
    last = _HASHED.get(str(path))
    return last[1] if last is not None and last[0] == file_key(path) else None


def _recorded(path: Path) -> list[str] | None:
    """Return ``search_digests.load(path)``, read once while search.json and its record are unchanged."""
    described = [file_key(path), file_key(search_digests.record_path(path))]
    last = _RECORD.get(str(path))
    if last is not None and last[0] == described and None not in described:
        return last[1]
    digests = search_digests.load(path)
    _RECORD.clear()
    if digests is not None:
        _RECORD[str(path)] = (described, digests)
    return digests


def load(path: Path, kept: Path | None = None, known: bytes | None = None) -> Answers:
    """Return the Answers of the search.json at ``path``; raise ArtifactError naming it when it is missing
    or broken. With ``kept`` (a file of the report's own), the answers kept there are used while search.json's
    results are as they were (``mark``): they were made from it, validated, when it last changed. When they
    changed, a result whose line is as it was is taken from the kept file without being parsed again
    (``_from_record``, else ``_from_lines``); a kept file that is torn is made again. ``known``: ``mark(path)``
    when the caller has it."""
    try:
        return _load(path, kept, known)
    finally:
        # The lines' digests held for ``mark`` and this load (tens of thousands at 8,000 workflows) are let go.
        _RECORD.clear()
        _HASHED.clear()


def _load(path: Path, kept: Path | None, known: bytes | None) -> Answers:
    """``load``."""
    if kept is not None and known is None:
        known = mark(path)
    last: _Kept | None = None
    if kept is not None and known is not None:
        last = _read_kept(kept)
        if last is not None and last.mark == known:
            same = last.answers()
            same.since, same.changed = known, frozenset()
            return same
    head, results = _results(path)
    offline, model_list = bool(head["offline"]), head.get("model_list")
    built = None
    if "result" in schema_definitions("search"):
        # The search's record of its lines' digests spares hashing them (a first report keeps them too, for the
        # next one); any doubt about it means hashing.
        recorded = _recorded(path) or _hashed_before(path)
        if last is not None and recorded is not None:
            built = _from_record(path, last, offline, model_list, recorded)
            if built is None:  # a line is not the one the record says: it is not trusted
                recorded = None
        if built is None:
            start = last or _Kept.empty(offline, model_list)
            built = _from_lines(path, start, offline, model_list, recorded)
            if built is not None and recorded is not None and len(built.digests) != len(recorded):
                built = _from_lines(path, start, offline, model_list)
    if built is None:
        built = _Kept.of(from_results(results, offline, model_list))
    elif last is not None:
        logger.debug("answers: %d of %d search results reused from %s", built.reused, len(built.digests), kept)
    if kept is not None and known is not None:
        built.mark = known
        _write_kept(kept, built)
    made = built.answers()
    if last is not None and built.changed is not None:
        made.since, made.changed = last.mark, frozenset(built.changed)
    return made


class _Kept:
    """What ``report_answers.pack`` holds: the mark of the search.json it was made from, the distinct answers
    (and their digests), and per result (one per line of search.json), in lists of one item per result: the
    digest of its line, its key, its answer's index, whether it is UNCERTAIN and gated, and its line's length."""

    # No __slots__: the tests compare two by their __dict__ (vars).
    mark: bytes
    table: list[dict[str, Any]]
    digests: list[str]  # each result line's ``search_digests.line_digest`` ("" when unknown)
    folders: list[str | None]
    lookups: list[str]
    index: list[int]  # of its answer in ``table``
    uncertain_flags: list[bool]
    gated: list[bool]
    sizes: list[int]  # each result line's length, without its comma and newline (0 when unknown)
    uncertain: int  # how many results are UNCERTAIN
    offline: bool
    model_list: str | None
    table_digests: list[bytes] | None  # ``_answer_digest`` of each of ``table``, once worked out
    reused: int  # how many lines were taken from the kept file (``_from_lines``)
    # The keys of the results not taken from the kept file, and of its results gone (``_from_lines``).
    changed: set[Key] | None

    def __init__(
        self,
        mark: bytes,
        table: list[dict[str, Any]],
        digests: list[str],
        folders: list[str | None],
        lookups: list[str],
        index: list[int],
        uncertain_flags: list[bool],
        gated: list[bool],
        sizes: list[int],
        uncertain: int,
        offline: bool,
        model_list: str | None,
        table_digests: list[bytes] | None = None,
        reused: int = 0,
        changed: set[Key] | None = None,
    ) -> None:
        self.mark, self.table, self.digests, self.folders, self.lookups = mark, table, digests, folders, lookups
        self.index, self.uncertain_flags, self.gated, self.sizes = index, uncertain_flags, gated, sizes
        self.uncertain, self.offline, self.model_list = uncertain, offline, model_list
        self.table_digests, self.reused, self.changed = table_digests, reused, changed

    @staticmethod
    def empty(offline: bool, model_list: str | None) -> _Kept:
        """Return a _Kept of no results (the keys of those added are noted as changed)."""
        return _Kept(b"", [], [], [], [], [], [], [], [], 0, offline, model_list, changed=set())

    @staticmethod
    def of(answers: Answers) -> _Kept:
        """Return the kept form of ``answers``, without its lines' digests (none of its results is reused)."""
        index = answers.index()
        keys = list(index)
        return _Kept(
            b"",
            answers._table,
            [""] * len(keys),
            [f for f, _ in keys],
            [k for _, k in keys],
            list(index.values()),
            [False] * len(keys),
            [k in answers.gated for k in keys],
            [0] * len(keys),
            answers.uncertain,
            answers.offline,
            answers.model_list,
        )

    def add(self, digest: str, found: Key, index: int, result: Mapping[str, Any], size: int = 0) -> None:
        """Add a result made now (its line's digest, its key, the index of its answer, its line's length)."""
        uncertain = result["status"] == "UNCERTAIN"
        self.sizes.append(size)
        self.digests.append(digest)
        self.folders.append(found[0])
        self.lookups.append(found[1])
        self.index.append(index)
        self.uncertain_flags.append(uncertain)
        self.gated.append(is_gated(result))
        self.uncertain += uncertain
        if self.changed is not None:
            self.changed.add(found)

    def answers(self) -> Answers:
        """Return the Answers this holds."""
        return _assemble(self)


# Bump when what a result's line is made into changes (``project``, ``is_gated``, ``key``) or what the kept
# file holds: a kept file of another format is not reused, line by line or whole. ``marshal``'s format is the
# Python's own, so the Python is part of the tag.
_KEPT_FORMAT = 3
_KEPT_TAG = f"report-answers-{_KEPT_FORMAT}/{sys.implementation.cache_tag}/marshal-{marshal.version}".encode()
_COLUMNS = ("digests", "folders", "lookups", "index", "uncertain_flags", "gated", "sizes")


def _from_record(
    path: Path, last: _Kept, offline: bool, model_list: str | None, recorded: Sequence[str]
) -> _Kept | None:
    """Return the answers of search.json's results given the search's record of this very file (``recorded``:
    each result line's digest, in order): a line whose digest ``last`` holds is taken from there, the others
    (a few, in a cycle where a few workflows changed) read alone, parsed, validated and projected; None when a
    line read is not the one the record says (then every line is read). Whole lists are built at a time, where
    ``_from_lines`` loops over every line in Python. Raise ArtifactError naming the file and line when a line
    read is broken."""
    size, old = len(last.digests), last.digests
    # The lines before the first change and after the last are the kept ones in place (a cycle changes a few
    # results, mostly in one place): only those between are looked up by their digest.
    head = _same_lines(old, recorded)
    tail = _same_lines(old[head:][::-1], recorded[head:][::-1])
    where = {digest: head + at for at, digest in enumerate(old[head : size - tail]) if digest}
    between = [where.get(digest, size) for digest in recorded[head : len(recorded) - tail]]  # size: not kept
    missing = [head + at for at, place in enumerate(between) if place == size]
    made = _Kept(b"", list(last.table), list(recorded), [], [], [], [], [], [], 0, offline, model_list, changed=set())
    for name in _COLUMNS[1:]:
        column = getattr(last, name)
        looked_up = [column[place] if place < size else None for place in between]
        setattr(made, name, [*column[:head], *looked_up, *column[size - tail :]])
    made.table_digests = list(last.table_digests) if last.table_digests is not None else None
    if missing and not _read_missing(path, made, missing):
        return None
    if made.table_digests is not None:  # the answers added
        made.table_digests += [_answer_digest(a) for a in made.table[len(made.table_digests) :]]
    # The kept results whose line is gone (a line before the first change or after the last is still there).
    now = set(recorded[head : len(recorded) - tail])
    gone = (at for at in range(head, size - tail) if old[at] not in now)
    made.changed.update((last.folders[at], last.lookups[at]) for at in gone)  # type: ignore[union-attr]
    made.uncertain = sum(made.uncertain_flags)
    made.reused = len(recorded) - len(missing)
    _drop_unused(made)
    return made


def _same_lines(old: Sequence[str], new: Sequence[str]) -> int:
    """Return how many of the first digests of ``old`` and ``new`` are the same, in the same places."""
    most, same, step = min(len(old), len(new)), 0, 512
    # A few hundred at a time compared as lists (no loop in Python over tens of thousands), then one at a time.
    while same + step <= most and old[same : same + step] == new[same : same + step]:
        same += step
    while same < most and old[same] == new[same]:
        same += 1
    return same


def _read_missing(path: Path, made: _Kept, missing: Sequence[int]) -> bool:
    """Read, parse and project into ``made`` the result lines at ``missing`` (indexes, ascending) of the
    search.json at ``path``, each found past the lines before it (``made.sizes``: their lengths, those of the
    missing lines found here); return False when a line read is not the one ``made.digests`` says."""
    shared = {orjson.dumps(a, option=orjson.OPT_SORT_KEYS): i for i, a in enumerate(made.table)}
    last_line, sizes, parse = len(made.digests) - 1, made.sizes, _parser(path)
    with path.open("rb") as handle:
        offset, done = len(handle.readline()), 0
        for at in missing:
            # Each line is its text, a comma (but the last) and a newline.
            offset += sum(sizes[done:at]) + 2 * (at - done)
            handle.seek(offset)
            line = handle.readline().rstrip(b"\n").removesuffix(b"," if at < last_line else b"")
            if search_digests.line_digest(line) != made.digests[at]:
                return False
            result = parse(line, at + 2)
            found = key(result["type"], result["name"])
            made.folders[at], made.lookups[at] = found
            made.index[at] = _share(shared, made.table, project(result))
            made.uncertain_flags[at] = result["status"] == "UNCERTAIN"
            made.gated[at] = is_gated(result)
            made.sizes[at] = len(line)
            made.changed.add(found)  # type: ignore[union-attr]
            offset += len(line) + (2 if at < last_line else 1)
            done = at + 1
    return True


def _note_gone(made: _Kept, last: _Kept, present: set[str]) -> None:
    """Note as changed in ``made`` the keys of the results of ``last`` whose line is not among ``present``."""
    assert made.changed is not None
    made.changed.update(
        (last.folders[at], last.lookups[at]) for at, digest in enumerate(last.digests) if digest not in present
    )


def _drop_unused(made: _Kept) -> None:
    """Leave out of ``made.table`` the answers no result has any more (the table keeps its order)."""
    used = set(made.index)
    if len(used) == len(made.table):
        return
    kept = sorted(used)
    moved = {old: new for new, old in enumerate(kept)}
    made.table = [made.table[old] for old in kept]
    if made.table_digests is not None:
        made.table_digests = [made.table_digests[old] for old in kept]
    made.index = list(map(moved.__getitem__, made.index))


def _from_lines(
    path: Path, last: _Kept, offline: bool, model_list: str | None, recorded: Sequence[str] | None = None
) -> _Kept | None:
    """Return the answers of search.json's results read a line at a time, each line that ``last`` holds
    (by its digest) taken from there, the others parsed, validated and projected; None when the file does
    not hold one result per line. Raise ArtifactError naming the file and line when a line is broken.
    ``recorded``: the digest of each line from the search's record of this very file (``search_digests``),
    used instead of hashing the line while there is one for it (the caller checks the count after)."""
    known = {digest: at for at, digest in enumerate(last.digests) if digest}
    shared: dict[bytes, int] = {}
    moved: dict[int, int] = {}  # index in last.table -> index in the new table
    made = _Kept.empty(offline, model_list)
    seen: set[str] = set()
    plain, parse = _Plain(shared, made.table), _parser(path)
    with path.open("rb") as handle:
        if not handle.readline().rstrip(b"\n").endswith(_OPENER):
            return None
        for number, raw in enumerate(handle, start=2):
            if raw.startswith(b"]"):
                _note_gone(made, last, seen)
                return made
            line = raw.rstrip(b"\n").removesuffix(b",")
            at = number - 2
            digest = recorded[at] if recorded is not None and at < len(recorded) else search_digests.line_digest(line)
            hit = known.get(digest)
            if hit is not None:
                seen.add(digest)
                index = moved.get(last.index[hit])
                if index is None:
                    index = moved[last.index[hit]] = _share(shared, made.table, last.table[last.index[hit]])
                uncertain = last.uncertain_flags[hit]
                made.digests.append(digest)
                made.folders.append(last.folders[hit])
                made.lookups.append(last.lookups[hit])
                made.index.append(index)
                made.uncertain_flags.append(uncertain)
                made.gated.append(last.gated[hit])
                made.sizes.append(len(line))
                made.uncertain += bool(uncertain)
                made.reused += 1
                continue
            result = parse(line, number)
            made.add(digest, key(result["type"], result["name"]), plain.index(result), result, len(line))
    raise ArtifactError(f"{path}: ends inside its list 'results' (a torn write?)")


class _Plain:
    """The answers of results added to a table (``_share``), found by a tuple of their fields when they have no
    candidates (nearly all: offline, thousands of NOT_SEARCHED answers), without encoding each to compare it."""

    def __init__(self, shared: dict[bytes, int], table: list[dict[str, Any]]) -> None:
        self.shared, self.table = shared, table
        self.seen: dict[tuple[Any, ...], int] = {}

    def index(self, result: Mapping[str, Any]) -> int:
        """Return the index in the table of ``project(result)``, added when no equal answer is there yet."""
        status = result["status"]
        if status == "NEEDS_ACCESS" or result.get("candidates"):
            return _share(self.shared, self.table, project(result))
        size = result.get("size")
        # The size's type too: 5 and 5.0 are equal in Python, not in the answer's JSON.
        fields = (status, result.get("source", "scan"), result.get("url"), result.get("evidence", "none"))
        found = (*fields, result.get("reason", ""), size, type(size))
        index = self.seen.get(found)
        if index is None:
            index = self.seen[found] = _share(self.shared, self.table, project(result))
        return index


def _parser(path: Path) -> Callable[[bytes, int], dict[str, Any]]:
    """Return a function of (a result line of search.json at ``path``, its number) returning its result,
    validated (``artifacts.item_line``, with the validator looked up once)."""
    loads, valid = orjson.loads, artifacts.fast_validator("search", "result").is_valid

    def parse(line: bytes, number: int) -> dict[str, Any]:
        try:
            result = loads(line)
        except orjson.JSONDecodeError:
            result = None
        if result is None or not valid(result):  # ``item_line`` says what is wrong, naming the file and line
            result = artifacts.item_line(line, number, path, "search", "result")
        return result  # type: ignore[no-any-return]

    return parse


def _share(shared: dict[bytes, int], table: list[dict[str, Any]], answer: dict[str, Any]) -> int:
    """Return the index of ``answer`` in ``table``, added when no equal answer is there yet."""
    text = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)
    index = shared.get(text)
    if index is None:
        index = shared[text] = len(table)
        table.append(answer)
    return index


def _read_kept(kept: Path) -> _Kept | None:
    """Return what ``_write_kept`` kept at ``kept``, or None when there is none of this format and Python, or
    it is torn or edited (its checksum), or not whole."""
    try:
        body = cache_files.read_checked(kept, _KEPT_TAG)
        if body is None:
            return None
        known, _, value = body.partition(b"\n")
        data = marshal.loads(value)
        table, columns = data["table"], [data[name] for name in _COLUMNS]
        if not isinstance(table, list) or any(not isinstance(c, list) or len(c) != len(columns[0]) for c in columns):
            return None
        if columns[3] and not (min(columns[3]) >= 0 and max(columns[3]) < len(table)):
            return None
        digests = data["table_digests"]
        if not isinstance(digests, list) or len(digests) != len(table):
            return None
        made = _Kept(
            known, table, [], [], [], [], [], [], [], int(data["uncertain"]), bool(data["offline"]), data["model_list"]
        )
        for name, column in zip(_COLUMNS, columns, strict=True):
            setattr(made, name, column)
        made.table_digests = digests
        return made
    except (OSError, EOFError, KeyError, TypeError, ValueError, IndexError) as exc:
        logger.debug("%s: not read (%s); search.json is read again", kept, exc)
        return None


def _write_kept(kept: Path, made: _Kept) -> bool:
    """Write ``made`` to ``kept`` for ``_read_kept``; return whether it was written."""
    if made.table_digests is None or len(made.table_digests) != len(made.table):
        made.table_digests = [_answer_digest(a) for a in made.table]
    payload = {name: getattr(made, name) for name in _COLUMNS}
    payload |= {"table": made.table, "table_digests": made.table_digests, "uncertain": made.uncertain}
    payload |= {"offline": made.offline, "model_list": made.model_list}
    try:
        # Two pieces: the answers (megabytes at 8,000 workflows) are not copied behind the mark.
        cache_files.write_checked(kept, _KEPT_TAG, made.mark + b"\n", marshal.dumps(payload))
    except (OSError, ValueError) as exc:
        logger.warning("%s: not written (%s); the next report reads search.json again", kept, exc)
        return False
    return True


class Handed:
    """The report's answers to the results of a search.json the search writes in full, gathered as the search
    makes each result (validated there), in search.json's order: per result the index of its answer in a table
    of distinct answers (``_Plain``, as ``_from_lines`` shares them) and whether it is gated. ``hand_over``
    writes them, once search.json is in place, as the report's kept answers of that very file, so its first
    report parses none of its lines. Any result it cannot take as ``_from_lines`` would leaves it ``broken``."""

    def __init__(self) -> None:
        self.table: list[dict[str, Any]] = []
        self._plain = _Plain({}, self.table)
        self.count = 0  # results added
        # Per result added by ``add``: its place, its answer's index and whether it is gated; the others
        # (``add_same``, most of an offline cycle's) are ``same``'s answer, told apart by their place alone.
        self.places: list[int] = []
        self.index: list[int] = []
        self.gated: list[bool] = []
        self.same: Mapping[str, Any] | None = None
        self.same_answer: tuple[int, bool] = (-1, False)
        # The results whose name or folder is not their query's: their key (else the query's is theirs).
        self.keys: dict[int, Key] = {}
        self.broken = False

    def add(self, item: Mapping[str, Any], folder: str | None, name: str) -> None:
        """Add the result ``item`` (its JSON as search.json gets it, validated) of the query of ``folder`` and
        ``name``."""
        place, self.count = self.count, self.count + 1
        if self.broken:
            return
        try:
            if item["type"] != folder or item["name"] != name:
                self.keys[place] = key(item["type"], item["name"])
            index, gated = self._plain.index(item), is_gated(item)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # not what a search.json line holds
            logger.debug("search answers not handed to the report (%s): it reads search.json", exc)
            self.broken = True
            return
        self.places.append(place)
        self.index.append(index)
        self.gated.append(gated)

    def add_same(self, rest: Mapping[str, Any]) -> None:
        """Add a result that is ``rest`` (one object, the same for every such result) with its query's name and
        folder: the answer every file no offline source knows gets offline (``search.OfflineBlank``)."""
        if rest is self.same:
            self.count += 1
            return
        place = self.count
        self.add({**rest, "type": None, "name": ""}, None, "")
        if self.same is None and self.places and self.places[-1] == place:
            self.same, self.same_answer = rest, (self.index.pop(), self.gated.pop())
            self.places.pop()

    def columns(self) -> tuple[list[int], list[bool]]:
        """Return per result added its answer's index and whether it is gated."""
        index, gated = [self.same_answer[0]] * self.count, [self.same_answer[1]] * self.count
        for place, answer, flag in zip(self.places, self.index, self.gated, strict=True):
            index[place], gated[place] = answer, flag
        return index, gated


def hand_over(
    path: Path,
    handed: Handed,
    queries: Sequence[Key],
    statuses: Sequence[str],
    digests: Sequence[str],
    sizes: Sequence[int],
    offline: bool,
    model_list: str | None,
) -> bool:
    """Write, beside the search.json at ``path`` just written in full, the report's kept answers of it
    (``KEPT``, with its ``mark``): the ``handed`` answers of its results, whose lines' digests and lengths
    are ``digests`` and ``sizes`` and whose queries' keys (folder, ``lookup`` of the name) and statuses are
    ``queries`` and ``statuses``; ``offline`` and ``model_list``: its head's. Return whether it was written.

    The answers are what ``_from_lines`` makes of search.json's lines: each distinct answer is encoded and
    decoded by orjson (the line's text and the report's parse) to be the value a parse gives. Nothing is
    written when a count differs or an answer cannot be encoded: the report then reads search.json."""
    count = len(digests)
    if handed.broken or not count or {handed.count, len(queries), len(statuses), len(sizes)} != {count}:
        return False
    if handed.same is None and len(handed.places) != count:
        return False
    try:
        table = [orjson.loads(orjson.dumps(answer)) for answer in handed.table]
        with path.open("rb") as handle:
            first = handle.readline()
            closing = artifacts.last_line(handle)
    except (TypeError, OSError) as exc:  # orjson.JSONEncodeError is a TypeError
        logger.debug("search answers not handed to the report: %s", exc)
        return False
    if not first.rstrip(b"\n").endswith(_OPENER) or not closing.startswith(b"]"):
        return False
    folders, lookups = (list(column) for column in zip(*queries, strict=True))
    for at, (folder, lookup_key) in handed.keys.items():
        folders[at], lookups[at] = folder, lookup_key
    flags = list(map("UNCERTAIN".__eq__, statuses))
    index, gated = handed.columns()
    made = _Kept(
        _lines_mark(first, digests, closing),
        table,
        digests if isinstance(digests, list) else list(digests),
        folders,
        lookups,
        index,
        flags,
        gated,
        sizes if isinstance(sizes, list) else list(sizes),
        sum(flags),
        offline,
        model_list,
    )
    return _write_kept(path.with_name(KEPT), made)
