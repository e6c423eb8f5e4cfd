"""What the search answered about each missing file, kept compact for the report: only the fields the report
shows, keyed by (folder type, lookup key of the name), with a digest per file so a workflow's part of the
report can be reused while the answers it depends on are unchanged (``parts``)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, resources
from comfywatchman.errors import ArtifactError
from comfywatchman.stages import search_digests
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


@dataclass
class Answers:
    """The search's answers for the report: projections by key, the gated files, and the search's facts."""

    results: dict[Key, dict[str, Any]] = field(default_factory=dict)
    gated: frozenset[Key] = frozenset()
    uncertain: int = 0
    offline: bool = False
    model_list: str | None = None
    _digests: dict[Key, bytes] = field(default_factory=dict, repr=False)
    _index: dict[Key, int] = field(default_factory=dict, repr=False)
    _table: list[dict[str, Any]] = field(default_factory=list, repr=False)
    # The keys whose result is not as it was in the search.json whose ``mark`` is ``since`` (the one the
    # report's kept answers were made from), when ``load`` could tell.
    since: bytes | None = None
    changed: frozenset[Key] | None = None

    def get(self, found: Key) -> Mapping[str, Any] | None:
        """Return the answer kept under ``found``, or None."""
        return self.results.get(found)

    def digest(self, found: Key) -> bytes:
        """Return a short digest of what the report shows of the answer under ``found`` (and whether its
        download needs a token), the same in every cycle the answer is the same."""
        return self._digests.get(found, _NO_DIGEST)


def from_results(results: Iterable[Mapping[str, Any]], offline: bool = False, model_list: str | None = None) -> Answers:
    """Return the Answers of search results (search.json's ``results``). Equal answers are kept once (offline,
    thousands of files share one NOT_SEARCHED answer), so what is kept grows with the distinct answers."""
    shared: dict[bytes, int] = {}
    table: list[dict[str, Any]] = []
    keys: list[tuple[str | None, str, int]] = []
    gated = []
    uncertain = 0
    for result in results:
        found = key(result["type"], result["name"])
        answer = project(result)
        text = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)
        index = shared.get(text)
        if index is None:
            index = shared[text] = len(table)
            table.append(answer)
        keys.append((found[0], found[1], index))
        uncertain += result["status"] == "UNCERTAIN"
        if is_gated(result):
            gated.append(found)
    return _assemble(table, keys, gated, uncertain, offline, model_list)


def _assemble(
    table: list[dict[str, Any]],
    keys: Iterable[Sequence[Any]],
    gated: Iterable[Sequence[Any]],
    uncertain: int,
    offline: bool,
    model_list: str | None,
) -> Answers:
    """Return the Answers of the distinct answers ``table`` and ``keys`` (folder, lookup key, index in it)."""
    digests = [hashlib.blake2b(orjson.dumps(a, option=orjson.OPT_SORT_KEYS), digest_size=12).digest() for a in table]
    answers = Answers(offline=offline, model_list=model_list, uncertain=uncertain)
    answers.gated = frozenset((g[0], g[1]) for g in gated)
    answers._table = table
    for folder, lookup_key, index in keys:
        found = (folder, lookup_key)
        answers.results[found] = table[index]
        answers._index[found] = index
        answers._digests[found] = digests[index] + (b"g" if found in answers.gated else b"")
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


def mark(path: Path) -> bytes | None:
    """Return a digest of what the report takes from the search.json at ``path``: its results, whether it
    ran offline and the model list it used; not when it was written nor its request counts (which change
    while the answers stay). None when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    cut = data.find(b'"results":')
    if cut < 0:
        return hashlib.blake2b(data, digest_size=16).hexdigest().encode("ascii")
    flags = sorted(_HEAD_FLAG.findall(data, 0, cut))
    h = hashlib.blake2b(orjson.dumps([[k.decode(), v.decode()] for k, v in flags]), digest_size=16)
    h.update(memoryview(data)[cut:])
    return h.hexdigest().encode("ascii")


def load(path: Path, kept: Path | None = None, known: bytes | None = None) -> Answers:
    """Return the Answers of the search.json at ``path``; raise ArtifactError naming it when it is missing
    or broken. With ``kept`` (a file of the report's own), the answers kept there are used while search.json's
    results are as they were (``mark``): they were made from it, validated, when it last changed. When they
    changed, a result whose line is as it was is taken from the kept file without being parsed again
    (``_from_lines``); a kept file that is torn is made again. ``known``: ``mark(path)`` when the caller has it."""
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
        start = last or _Kept(b"", [], [], 0, offline, model_list)
        # The search's record of its lines' digests spares hashing them (a first report keeps them too, for the
        # next one); any doubt about it means hashing.
        recorded = search_digests.load(path)
        built = _from_lines(path, start, offline, model_list, recorded)
        if built is not None and recorded is not None and len(built.lines) != len(recorded):
            built = _from_lines(path, start, offline, model_list)
    if built is None:
        built = _Kept.of(from_results(results, offline, model_list))
    elif last is not None:
        logger.debug("answers: %d of %d search results reused from %s", built.reused, len(built.lines), kept)
    if kept is not None and known is not None:
        built.mark = known
        _write_kept(kept, built)
    made = built.answers()
    if last is not None and built.changed is not None:
        made.since, made.changed = last.mark, frozenset(built.changed)
    return made


@dataclass
class _Kept:
    """What ``report_answers.pack`` holds: the mark of the search.json it was made from, the distinct answers,
    and per result (one per line of search.json) the digest of its line, its key, its answer's index, and
    whether it is UNCERTAIN and gated."""

    mark: bytes
    table: list[dict[str, Any]]
    # [line digest (hex, "" when unknown), folder, lookup key, index in table, uncertain, gated]
    lines: list[list[Any]]
    uncertain: int
    offline: bool
    model_list: str | None
    reused: int = 0  # how many lines were taken from the kept file (``_from_lines``)
    # The keys of the results not taken from the kept file, and of its results gone (``_from_lines``).
    changed: set[Key] | None = None

    @staticmethod
    def of(answers: Answers) -> _Kept:
        """Return the kept form of ``answers``, without its lines' digests (none of its results is reused)."""
        lines = [["", f, k, i, False, (f, k) in answers.gated] for (f, k), i in answers._index.items()]
        return _Kept(b"", answers._table, lines, answers.uncertain, answers.offline, answers.model_list)

    def answers(self) -> Answers:
        """Return the Answers this holds."""
        keys = [(line[1], line[2], line[3]) for line in self.lines]
        gated = [(line[1], line[2]) for line in self.lines if line[5]]
        return _assemble(self.table, keys, gated, self.uncertain, self.offline, self.model_list)


_OPENER = b'"results":['
# Bump when what a result's line is made into changes (``project``, ``is_gated``, ``key``): a kept file of
# another format is not reused, line by line or whole.
_KEPT_FORMAT = 2


def _from_lines(
    path: Path, last: _Kept, offline: bool, model_list: str | None, recorded: Sequence[str] | None = None
) -> _Kept | None:
    """Return the answers of search.json's results read a line at a time, each line that ``last`` holds
    (by its digest) taken from there, the others parsed, validated and projected; None when the file does
    not hold one result per line. Raise ArtifactError naming the file and line when a line is broken.
    ``recorded``: the digest of each line from the search's record of this very file (``search_digests``),
    used instead of hashing the line while there is one for it (the caller checks the count after)."""
    known = {line[0]: line for line in last.lines if line[0]}
    shared: dict[bytes, int] = {}
    moved: dict[int, int] = {}  # index in last.table -> index in the new table
    made = _Kept(b"", [], [], 0, offline, model_list, changed=set())
    assert made.changed is not None
    seen: set[str] = set()
    with path.open("rb") as handle:
        if not handle.readline().rstrip(b"\n").endswith(_OPENER):
            return None
        for number, raw in enumerate(handle, start=2):
            if raw.startswith(b"]"):
                made.changed.update((line[1], line[2]) for line in last.lines if line[0] not in seen)
                return made
            line = raw.rstrip(b"\n").removesuffix(b",")
            at = number - 2
            digest = recorded[at] if recorded is not None and at < len(recorded) else search_digests.line_digest(line)
            hit = known.get(digest)
            if hit is not None:
                seen.add(digest)
                index = moved.get(hit[3])
                if index is None:
                    index = moved[hit[3]] = _share(shared, made.table, last.table[hit[3]])
                made.lines.append([digest, hit[1], hit[2], index, hit[4], hit[5]])
                made.uncertain += bool(hit[4])
                made.reused += 1
                continue
            result: dict[str, Any] = artifacts.item_line(line, number, path, "search", "result")
            found = key(result["type"], result["name"])
            index = _share(shared, made.table, project(result))
            uncertain = result["status"] == "UNCERTAIN"
            made.lines.append([digest, *found, index, uncertain, is_gated(result)])
            made.changed.add(found)
            made.uncertain += uncertain
    raise ArtifactError(f"{path}: ends inside its list 'results' (a torn write?)")


def _share(shared: dict[bytes, int], table: list[dict[str, Any]], answer: dict[str, Any]) -> int:
    """Return the index of ``answer`` in ``table``, added when no equal answer is there yet."""
    text = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)
    index = shared.get(text)
    if index is None:
        index = shared[text] = len(table)
        table.append(answer)
    return index


def _read_kept(kept: Path) -> _Kept | None:
    try:
        with kept.open("rb") as handle:
            known = handle.readline().rstrip(b"\n")
            data = orjson.loads(handle.read())
        if data.get("format") != _KEPT_FORMAT:
            return None
        table, lines = data["table"], data["lines"]
        if not isinstance(table, list) or not all(isinstance(line, list) and len(line) == 6 for line in lines):
            return None
        if any(not 0 <= line[3] < len(table) for line in lines):
            return None
        return _Kept(known, table, lines, int(data["uncertain"]), bool(data["offline"]), data["model_list"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return None


def _write_kept(kept: Path, made: _Kept) -> None:
    payload = {
        "format": _KEPT_FORMAT,
        "table": made.table,
        "lines": made.lines,
        "uncertain": made.uncertain,
        "offline": made.offline,
        "model_list": made.model_list,
    }
    tmp = kept.with_name(f".{kept.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(made.mark + b"\n" + orjson.dumps(payload))
        os.replace(tmp, kept)
    except OSError as exc:
        logger.warning("%s: not written (%s); the next report reads search.json again", kept, exc)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
