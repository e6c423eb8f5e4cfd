"""The verify of a cycle where a few workflows changed, at the cost of what they touch: ``state/verify_delta.bin``.

verify.json is made of one drift entry per (installed file, expected hash) and one alternatives entry per missing
file with variants on disk. A file's entries depend on the workflows that name it (in scan.json's order: the
name and URL first met), on the FOUND answers of search.json, on where the model cache puts it, on the file
itself (its size and mtime stand for it) and on its hash (``hashing.HashStore``); a missing file's variants on
the model cache alone. So verify keeps, beside verify.json, each scan.json line's digest, workflow and share
(``verify.contribution``: the installed files a hash is expected for, the missing files), which lines name each
installed file and each missing file, the FOUND answers it read and where it found each file. The next verify
compares scan.json's lines with it and, when few changed and the others kept their order, works out again only
the files the changed lines name (from the shares of the lines that name them), and copies every other entry
from the last verify.json.

What the memo keeps of each missing file, and the model cache's folders (for the variants of a file missing
now), stay bytes: one line per missing file, sorted, found by bisection (``MissingLines``), and the folders as
one block (``Folders``); a verify parses only the few a change touches and copies the others as they were.

The file is a cache, safe to lose: it is used only when it goes with the verify.json, verify_inputs.json and
hashes.json on disk (their size and mtime), the model cache and the settings it was made under, when the FOUND
answers are the same, no file waits to be hashed and every file verified last time is as it was; anything
else (a torn or foreign file, another layout, many changes) means the full verify. Anything kept gives the
bytes a full verify gives: the test suite compares the two.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import orjson

from comfywatchman import artifacts, hashing, stage_inputs
from comfywatchman.comfy.variants import VariantIndex
from comfywatchman.errors import ArtifactError
from comfywatchman.search.names import lookup_key
from comfywatchman.stages import cache_files, scan_digests, scan_parts
from comfywatchman.stages import verify as core

logger = logging.getLogger(__name__)

FILE = "verify_delta.bin"
#: Bump when what the file holds, or what verify.json's entries are made of, changes meaning.
TAG = b"verify-delta-5"
#: More changed scan.json lines than this share of them (or than ``MIN_CHANGES``): the full verify.
CHANGED_SHARE = 0.05
MIN_CHANGES = 16

_KEY = b'"workflows":['

Key = tuple[str | None, str]  # a missing file: its folder and lookup key


class Full(Exception):
    """The verify cannot be made from the last one: verify in full (the message says why)."""


class MissingLines:
    """The missing files of a memo: one line of JSON per file, ``[folder, lookup key, entry_key, line ids]``,
    sorted by their bytes. A verify where a few workflows changed looks up, and changes, only the files those
    touch: each is found by bisection on the bytes its line starts with (the JSON of its folder and key), so
    the thousands of others are never parsed nor encoded again, only copied. (The model cache's folders are
    kept the same way, one line ``[folder, files]`` each, looked up by ``(folder,)``: ``Folders``.)"""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    @classmethod
    def of(cls, rows: Iterable[list[Any]]) -> MissingLines:
        """Return the lines of ``rows`` (``[folder, lookup key, entry_key, line ids]`` each), sorted."""
        return cls(sorted(_line(row) for row in rows))

    @staticmethod
    def _prefix(key: tuple[Any, ...]) -> bytes:
        # What the line of ``key`` starts with, and no other line does: the JSON of a list is the JSON of its
        # items, and the folder's and key's texts end with their closing quotes.
        return orjson.dumps(list(key))[:-1] + b","

    def _at(self, key: tuple[Any, ...]) -> int | None:
        prefix = self._prefix(key)
        at = bisect.bisect_left(self.lines, prefix)
        return at if at < len(self.lines) and self.lines[at].startswith(prefix) else None

    def get(self, key: tuple[Any, ...]) -> list[Any] | None:
        """Return ``[entry_key, line ids]`` of the missing file ``key`` (the rest of the line after the key),
        or None when there is none."""
        at = self._at(key)
        return None if at is None else cast(list[Any], orjson.loads(self.lines[at])[len(key) :])

    def pop(self, key: Key) -> None:
        """Forget the missing file ``key`` (when there is one)."""
        at = self._at(key)
        if at is not None:
            del self.lines[at]

    def put(self, key: Key, entry_key: str, line_ids: list[int]) -> None:
        """Add the missing file ``key`` (none there before: ``pop`` it first)."""
        bisect.insort(self.lines, _line([key[0], key[1], entry_key, line_ids]))

    def rows(self) -> list[list[Any]]:
        """Return every line parsed (for tests and checks; a verify never needs them all)."""
        return [orjson.loads(line) for line in self.lines]


def _line(row: list[Any]) -> bytes:
    """Return the JSON of ``row`` as bytes of its own size: orjson's bytes keep the buffer it wrote them in
    (some 4 KB however short the text), and a memo keeps thousands of lines (35 MB instead of 1)."""
    return bytes(memoryview(orjson.dumps(row)))


class Folders:
    """The model cache's folders in a memo: one block of lines ``[folder, files]`` sorted by their bytes
    (``MissingLines``), with its checksum (``cache_files.checksum``). Kept as one block, written as it was read
    (its digest too), and split into lines only when a folder's files are asked for."""

    def __init__(self, block: bytes, digest: str | None = None) -> None:
        self.block = block
        self.digest = digest if digest is not None else cache_files.checksum(block).decode("ascii")
        self._lines: MissingLines | None = None

    @classmethod
    def of(cls, model_cache: Mapping[str, Any]) -> Folders:
        """Return the folders of the model cache document ``model_cache``."""
        lines = MissingLines.of([folder, group["files"]] for folder, group in model_cache["folders"].items())
        return cls(b"".join(line + b"\n" for line in lines.lines))

    def _split(self) -> MissingLines:
        if self._lines is None:
            self._lines = MissingLines(self.block.split(b"\n")[:-1])  # each line ends with a newline
        return self._lines

    def files(self, folder: str) -> list[Any] | None:
        """Return the files of ``folder`` (as the model cache lists them), or None when it has no such folder."""
        got = self._split().get((folder,))
        return None if got is None else cast(list[Any], got[0])

    def rows(self) -> list[list[Any]]:
        """Return ``[folder, files]`` of each folder (for tests and checks)."""
        return self._split().rows()


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class Memo:
    """What the next verify needs to verify only what changed (see the module). Each scan.json line has an
    id that stays while the line does (``ids``); the lines that name a file are given by their ids."""

    # No __slots__: the file's head is the instance's __dict__ (``chunks``), its keys in the order __init__ sets.
    basis: str
    outputs: list[list[int] | None]  # the stat of verify.json, verify_inputs.json and hashes.json
    found: list[list[Any]]  # ``FoundRecord.lines`` of search.json
    ids: list[int]
    digests: list[str]
    paths: list[str]
    targets: dict[str, list[int]]  # installed file -> the lines that expect a hash of it
    missing: MissingLines  # [folder, lookup key, entry_key, lines] of each missing file
    #: [folder, files] of each folder type of the model cache (``basis`` has its stat), for the variants of a
    #: file missing now: a folder's files read without reading the model cache's megabytes.
    folders: Folders
    located: list[list[Any]]  # [folder, name, path or None] of each installed file looked up
    #: Each line's ``contribution`` (JSON), in order: a list, or one buffer of lines (``verify.Shares``).
    shares: list[bytes] | bytearray

    def __init__(
        self,
        basis: str,
        outputs: list[list[int] | None],
        found: list[list[Any]],
        ids: list[int],
        digests: list[str],
        paths: list[str],
        targets: dict[str, list[int]],
        missing: MissingLines,
        folders: Folders,
        located: list[list[Any]],
        shares: list[bytes] | bytearray | None = None,
    ) -> None:
        self.basis = basis
        self.outputs = outputs
        self.found = found
        self.ids = ids
        self.digests = digests
        self.paths = paths
        self.targets = targets
        self.missing = missing
        self.folders = folders
        self.located = located
        self.shares = [] if shares is None else shares

    def chunks(self) -> list[bytes]:
        """Return the file's content in pieces: the tag, the memo bar the missing files, the shares and the
        folders as one line of JSON (with how many missing files there are, the digest of them and the shares,
        and that of the folders), then one line per missing file (``MissingLines``), one per share (a buffer of
        lines is never copied into one more), and the folders' block (``Folders``) as it is."""
        # Each line ended by a newline, joined once (an empty last item gives the last newline without a copy).
        body = [b"\n".join([*self.missing.lines, b""])] if self.missing.lines else []
        if isinstance(self.shares, bytearray):
            # One buffer of lines, each ended by a newline; written and hashed as it is (no copy to bytes).
            body.append(cast(bytes, self.shares))
        elif self.shares:  # one buffer: a write per share was thousands of writes
            body.append(b"\n".join([*self.shares, b""]))
        head = {k: v for k, v in self.__dict__.items() if k not in ("shares", "missing", "folders")}
        head["missing"], head["folders"] = len(self.missing.lines), self.folders.digest
        # A CRC-32, a check against a torn file at a third of a sha256's time on megabytes (``cache_files``).
        head["body"] = cache_files.checksum(*body).decode("ascii")
        return [TAG, b"\n", orjson.dumps(head), b"\n", *body, self.folders.block]

    def share(self, index: int) -> bytes:
        """Return the share of the line at ``index`` (of a memo read from its file)."""
        assert isinstance(self.shares, list)
        return self.shares[index]

    @classmethod
    def load(cls, path: Path) -> Memo | None:
        """Return the memo at ``path``; None when there is none, or it is torn or of another format."""
        data = artifacts.read_cache(path, "verified in full")
        if data is None:
            return None
        if not data.startswith(TAG + b"\n"):  # the memo of another version: its loss costs one full verify
            logger.info("%s: of another format; verified in full", path)
            return None
        try:
            tag_end = len(TAG) + 1
            head_end = data.index(b"\n", tag_end) + 1
            head = orjson.loads(memoryview(data)[tag_end : head_end - 1])
            count, shares = head.pop("missing"), len(head["ids"])
            if type(count) is not int or count < 0:
                raise ValueError("its count of missing files is not one")
            # The head, each missing file, each share, then the folders' block whole (never split here).
            lines = data.split(b"\n", 2 + count + shares)[2:]  # split as it is: no copy of megabytes first
            if len(lines) != count + shares + 1:
                raise ValueError("it has fewer lines than its head says")
            block = lines.pop()
            body = memoryview(data)[head_end : len(data) - len(block)]
            if cache_files.checksum(body).decode("ascii") != head.pop("body"):
                raise ValueError("its lines do not match their digest")
            folders = Folders(block)
            if folders.digest != head.pop("folders"):
                raise ValueError("its folders do not match their digest")
            memo = cls(**head, missing=MissingLines(lines[:count]), folders=folders, shares=lines[count:])
            if not len(memo.ids) == len(memo.digests) == len(memo.paths) == len(memo.shares):
                raise ValueError("its lists differ in length")
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            logger.warning("%s: not a verify memo (%s); verified in full", path, exc)
            return None
        return memo


def basis_of(state: Path, settings: Mapping[str, Any]) -> str:
    """Return the key of what a memo holds besides scan.json and the answers: the format, the settings and
    the model cache (rewritten only when its content changes, so its size and mtime stand for it)."""
    return artifacts.content_hash(
        {
            "format": core.FORMAT,
            "tag": TAG.decode("ascii"),
            "settings": dict(settings),
            "model_cache": stage_inputs.stat_key(state / "model_cache.json"),
        }
    )


def outputs_of(state: Path) -> list[list[int] | None]:
    """Return the stat of the files a memo goes with."""
    return [stage_inputs.stat_key(state / name) for name in (core.ARTIFACT, core.INPUTS, hashing.FILE)]


class Locator:
    """``(folder, name)`` -> absolute path of an installed file, from the answers kept and, for a file not
    looked up before, from the model cache (read only then). Every answer is kept for the next memo."""

    def __init__(self, answers: Mapping[tuple[str, str], str | None], cache: ModelCache | None = None) -> None:
        self.answers = dict(answers)
        self.cache = cache
        self._files: core.FileLocator | None = None

    def get(self, key: tuple[str, str]) -> str | None:
        """Return the absolute path of ``(folder, name)``, or None when the cache has no such file."""
        if key in self.answers:
            return self.answers[key]
        if self._files is None:
            if self.cache is None:
                raise Full("no model cache to look up a file in")
            self._files = core.FileLocator(self.cache.get())
        path = self.answers[key] = self._files.get(key)
        return path

    def to_json(self) -> list[list[Any]]:
        return [[folder, name, path] for (folder, name), path in self.answers.items()]


class ModelCache:
    """model_cache.json, read when first needed. Not validated again: a memo is used only with the very model
    cache (its size and mtime are in the memo's basis) that the full verify which made it read and validated,
    and the schema's pass over tens of thousands of files took a third of the read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._document: dict[str, Any] | None = None

    def get(self) -> dict[str, Any]:
        """Return the document; raise Full when it cannot be read as a model cache."""
        if self._document is None:
            try:
                document = orjson.loads(self.path.read_bytes())
            except (OSError, orjson.JSONDecodeError) as exc:
                raise Full(f"{self.path}: unreadable ({exc})") from None
            if not isinstance(document, dict) or not isinstance(document.get("folders"), dict):
                raise Full(f"{self.path}: not a model cache")
            self._document = document
        return self._document


class Again:
    """A verify made from the last one: what verify.json and verify_inputs.json are made of, the hash store
    to save, and the memo to write once they are."""

    __slots__ = ("alternatives", "changed", "drift", "memo", "paths", "progress", "stats", "store", "variants")

    progress: core.Progress
    drift: list[dict[str, Any]]
    alternatives: list[dict[str, Any]]
    paths: list[str]
    stats: str
    variants: dict[str, Any]
    store: hashing.HashStore
    memo: Memo
    changed: int

    def __init__(
        self,
        progress: core.Progress,
        drift: list[dict[str, Any]],
        alternatives: list[dict[str, Any]],
        paths: list[str],
        stats: str,
        variants: dict[str, Any],
        store: hashing.HashStore,
        memo: Memo,
        changed: int,
    ) -> None:
        self.progress, self.drift, self.alternatives, self.paths = progress, drift, alternatives, paths
        self.stats, self.variants, self.store, self.memo, self.changed = stats, variants, store, memo, changed


def memo_of(
    basis: str,
    record: core.FoundRecord,
    digests: list[bytes],
    shares: core.Shares,
    found: Mapping[str, core.Target],
    missing: Mapping[Key, core.Missing],
    located: Mapping[tuple[str, str], str | None],
    entry_keys: Mapping[Key, str],
    folders: Folders,
) -> Memo | None:
    """Return the memo of a full verify (``shares``: the path and share of each scan.json line, in order;
    ``entry_keys``: the ``entry_key`` of each of ``missing``; ``folders``: ``folder_lines`` of the model cache
    it read), or None when none can be made (search.json or scan.json in another layout, a workflow twice)."""
    id_of = {path: i for i, path in enumerate(shares.paths)}
    if not record.complete or len(digests) != len(shares.paths) or len(id_of) != len(shares.paths):
        return None
    return Memo(
        basis,
        [],
        record.lines,
        list(range(len(shares.paths))),
        [d.decode("ascii") for d in digests],
        shares.paths,
        {path: sorted(id_of[w] for w in target.workflows) for path, target in found.items()},
        MissingLines.of([k[0], k[1], entry_keys[k], [id_of[w] for w in e.workflows]] for k, e in missing.items()),
        folders,
        [[folder, name, path] for (folder, name), path in located.items()],
        shares.body,
    )


def folder_lines(model_cache: Mapping[str, Any]) -> Folders:
    """Return ``[folder, files]`` of each folder type of the model cache document ``model_cache``."""
    return Folders.of(model_cache)


def save(path: Path, memo: Memo | None, state: Path) -> None:
    """Write ``memo`` to ``path`` atomically, with the stat of the outputs just written; remove the file when
    there is no memo (a failure costs the next verify a full run, with a warning)."""
    try:
        if memo is None:
            path.unlink(missing_ok=True)
            return
        memo.outputs = outputs_of(state)
        cache_files.write_cache(path, *memo.chunks())
    except OSError as exc:
        logger.warning("%s: cannot be written (%s); the next verify runs in full", path, exc)


def verify_again(
    state: Path, previous: Mapping[str, Any] | None, settings: Mapping[str, Any], count_inactive: bool
) -> Again | None:
    """Return this verify made from the last one (see the module), or None when the full verify must run."""
    if previous is None or previous["files_pending"]:
        return None
    memo = Memo.load(state / FILE)
    if memo is None:
        return None
    if memo.basis != basis_of(state, settings) or memo.outputs != outputs_of(state):
        logger.info("verify: verified in full: the model cache, the settings or the last outputs changed")
        return None
    try:
        return _again(state, memo, previous, count_inactive)
    except Full as exc:
        logger.info("verify: verified in full: %s", exc)
    except (ArtifactError, OSError) as exc:
        logger.info("verify: verified in full: %s", exc)
    return None


def _results(state: Path, memo: Memo) -> tuple[dict[Key, dict[str, Any]], core.FoundRecord]:
    """Return the FOUND answers of search.json (the lines read before known by their digest) and what was
    read; raise Full when they are not the answers the memo was made with."""
    record = core.FoundRecord()
    path = state / "search.json"
    if path.exists():
        known = {digest: kept for digest, kept in memo.found}
        for _ in core._found_items(path, known, record):
            pass
        if not record.complete:
            raise Full("search.json is in another layout")
    now = [kept for _, kept in record.lines if kept is not None]
    before = [kept for _, kept in memo.found if kept is not None]
    # The same answers in the same order give the same table; else the tables are compared.
    results = core.results_of(now)
    if now != before and results != core.results_of(before):
        raise Full("the FOUND answers changed")
    return results, record


def line_digest(data: bytes, start: int = 0, end: int | None = None) -> str:
    """Return ``scan_parts.line_digest`` of the scan.json line ``data[start:end]`` as text (the memo's keys)."""
    return scan_parts.line_digest(data, start, end).decode("ascii")


#: How much of scan.json is read at a time (its lines are hashed where they lie in it).
CHUNK = 1 << 22


def _scan_lines(state: Path, before: set[str]) -> tuple[list[str], dict[int, bytes]]:
    """Return the digest of each workflow line of scan.json, in order, and the lines (without their comma)
    whose digest is not in ``before``, by index: from the scan's record (``scan_digests``) when it describes
    this very file, only the new lines read; else read ``CHUNK`` bytes at a time, only new lines kept."""
    index = scan_digests.load(state / "scan.json")
    if index is not None:
        digests = [d.decode("ascii") for d in index.digests]
        wanted = [i for i, digest in enumerate(digests) if digest not in before]
        return digests, index.lines(state / "scan.json", wanted)
    digests = []
    new: dict[int, bytes] = {}
    with (state / "scan.json").open("rb") as handle:
        if not handle.readline().rstrip(b"\n").endswith(_KEY):
            raise Full("scan.json is in another layout")
        data = b""
        while chunk := handle.read(CHUNK):
            data += chunk
            start = 0
            while (stop := data.find(b"\n", start)) >= 0:
                if data.startswith(b"]", start):
                    return digests, new
                digest = line_digest(data, start, stop)
                if digest not in before:
                    new[len(digests)] = data[start:stop].removesuffix(b",")
                digests.append(digest)
                start = stop + 1
            data = data[start:]
        if data.startswith(b"]"):
            return digests, new
    raise Full("scan.json ends inside its list")


def _changes(memo: Memo, digests: list[str]) -> tuple[list[int], list[int]]:
    """Return the indexes of the last lines gone and of the lines new this time; raise Full when the lines
    that stayed are not in the same order, a line is there twice, or too many changed."""
    now_set, before_set = set(digests), set(memo.digests)
    if len(now_set) != len(digests) or len(before_set) != len(memo.digests):
        raise Full("a line of scan.json is there twice")
    gone = [i for i, d in enumerate(memo.digests) if d not in now_set]
    new = [i for i, d in enumerate(digests) if d not in before_set]
    if len(gone) + len(new) > max(MIN_CHANGES, CHANGED_SHARE * len(digests)):
        raise Full(f"{len(gone) + len(new)} lines of scan.json changed")
    if [d for d in digests if d in before_set] != [d for d in memo.digests if d in now_set]:
        raise Full("the lines of scan.json are in another order")
    return gone, new


class _Lines:
    """scan.json's lines now: each one's id, workflow and share (``contribution``, parsed when asked for)."""

    def __init__(self, memo: Memo, state: Path, count_inactive: bool) -> None:
        self.digests, self._new = _scan_lines(state, set(memo.digests))
        self.gone, _ = _changes(memo, self.digests)
        before = {d: i for i, d in enumerate(memo.digests)}
        self.memo, self.count_inactive = memo, count_inactive
        self.ids: list[int] = []
        self.paths: list[str] = []
        self.fresh: dict[int, list[Any]] = {}  # id -> [path, rows, missing] of each new line
        next_id = max(memo.ids, default=-1) + 1
        for digest in self.digests:
            at = before.get(digest)
            if at is None:
                self.ids.append(next_id)
                next_id += 1
            else:
                self.ids.append(memo.ids[at])
        self.position = {line_id: i for i, line_id in enumerate(self.ids)}
        self._old_at = {memo.ids[i]: i for i in range(len(memo.ids))}

    def parse_new(self, answered: set[str]) -> None:
        """Parse and validate the new lines, and take their shares given the ``answered`` keys."""
        check = artifacts.fast_validator("scan", "workflow")
        for index, line in sorted(self._new.items()):
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise Full("a new line of scan.json is not JSON") from None
            if not check.is_valid(item):
                raise Full("a new line of scan.json is not a scan entry")
            self.fresh[self.ids[index]] = list(core.contribution(core.verify_part(item), answered))
        for line_id in self.ids:
            self.paths.append(
                self.fresh[line_id][0] if line_id in self.fresh else self.memo.paths[self._old_at[line_id]]
            )
        if len(set(self.paths)) != len(self.paths):
            raise Full("a workflow is in scan.json twice")

    def share(self, line_id: int) -> list[Any]:
        """Return ``[path, rows, missing]`` of a line, new or kept (gone ones included)."""
        found = self.fresh.get(line_id)
        if found is not None:
            return found
        at = self._old_at[line_id]
        rows, missing = orjson.loads(self.memo.share(at))
        return [self.memo.paths[at], rows, missing]

    def changed_shares(self) -> list[list[Any]]:
        """Return the shares of the lines gone and of the new ones."""
        return [self.share(self.memo.ids[i]) for i in self.gone] + list(self.fresh.values())


def _touched(lines: _Lines, locator: Locator, results: Mapping[Key, Any]) -> tuple[set[str], set[Key]]:
    """Return the installed files and the missing files the changed lines name."""
    changed = lines.changed_shares()
    document = {"workflows": [core.installed_entry(path, rows) for path, rows, _ in changed if rows]}
    paths = set(core.targets(document, locator, results))
    return paths, {(row[0], row[4]) for _, _, missing in changed for row in missing}


def _regroup(
    lines: _Lines,
    line_ids: Iterable[int],
    locator: Locator,
    results: Mapping[Key, Any],
    paths: set[str],
    keys: set[Key],
) -> tuple[dict[str, core.Target], dict[Key, core.Missing]]:
    """Return the targets of ``paths`` and the missing files of ``keys`` as a full verify makes them, from
    the shares of ``line_ids`` (every line that names one of them), in scan.json's order."""
    document: dict[str, Any] = {"workflows": []}
    table: dict[Key, core.Missing] = {}
    for line_id in sorted(line_ids, key=lines.position.__getitem__):
        path, rows, missing = lines.share(line_id)
        if rows:
            document["workflows"].append(core.installed_entry(path, rows))
        core.add_missing_part(table, path, missing, lines.count_inactive)
    targets = core.targets(document, locator, results)
    return {p: t for p, t in targets.items() if p in paths}, {k: table[k] for k in keys if k in table}


def _stats(paths: Iterable[str]) -> dict[str, hashing.Stat | None]:
    return {path: hashing.stat_of(path) for path in paths}


def _again(state: Path, memo: Memo, previous: Mapping[str, Any], count_inactive: bool) -> Again:
    results, record = _results(state, memo)
    queue = artifacts.read_optional(state / "download_queue.json", "download_queue")
    sizes = core._download_sizes(results.values(), queue)
    lines = _Lines(memo, state, count_inactive)
    answered = core.answered_keys(results)
    lines.parse_new(answered)
    cache = ModelCache(state / "model_cache.json")
    locator = Locator({(f, n): p for f, n, p in memo.located}, cache)
    touched_paths, touched_keys = _touched(lines, locator, results)
    missing_index = MissingLines(list(memo.missing.lines))  # the next memo's, made from this one's
    alive = lines.position
    needed = {i for p in touched_paths for i in memo.targets.get(p, ()) if i in alive}
    for key in touched_keys:
        named = missing_index.get(key)
        needed |= {i for i in (named[1] if named else ()) if i in alive}
    needed |= set(lines.fresh)
    targets, missing = _regroup(lines, needed, locator, results, touched_paths, touched_keys)

    all_paths = (set(memo.targets) - touched_paths) | set(targets)
    checked = sorted(all_paths)
    if previous["paths"] != sorted(memo.targets):
        raise Full("verify_inputs.json does not go with the memo")
    stats_all = _stats(all_paths | set(previous["paths"]))
    if core.digest_of_stats(previous["paths"], stats_all) != previous["stats"]:
        raise Full("a file verified last time changed")
    stats = {p: s for p in checked if (s := stats_all[p]) is not None}
    store = hashing.HashStore(state / hashing.FILE).load()
    known: dict[str, str] = {}
    for path, stat in stats.items():
        sha = store.get(path, stat)
        if sha is None:
            raise Full(f"{path} waits to be hashed")
        known[path] = sha
    store.forget_except(all_paths | {p for p in store.files if p not in all_paths and os.path.exists(p)})

    last = orjson.loads((state / core.ARTIFACT).read_bytes())
    drift = _drift(last["drift"], checked, targets, stats, known)
    progress = core.Progress(files_verified=len(stats), bytes_verified=sum(s.size for s in stats.values()))
    alternatives, variants = _alternatives(
        state, previous, last, missing, touched_keys, missing_index, sizes, memo.folders
    )
    new_memo = _next_memo(memo, lines, record, targets, touched_paths, missing, touched_keys, missing_index, locator)
    return Again(
        progress,
        drift,
        alternatives,
        checked,
        core.digest_of_stats(checked, stats_all),
        variants,
        store,
        new_memo,
        len(lines.gone) + len(lines.fresh),
    )


def _drift(
    last: list[dict[str, Any]],
    checked: list[str],
    targets: Mapping[str, core.Target],
    stats: Mapping[str, hashing.Stat],
    known: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Return the drift entries: the last ones of the files untouched, made again for the touched ones, in
    the order of their paths."""
    by_path: dict[str, list[dict[str, Any]]] = {}
    for entry in last:
        if entry["path"] not in targets:
            by_path.setdefault(entry["path"], []).append(entry)
    for entry in core.drift_findings(targets, stats, known):
        by_path.setdefault(entry["path"], []).append(entry)
    return [entry for path in checked for entry in by_path.get(path, ())]


def _alternatives(
    state: Path,
    previous: Mapping[str, Any],
    last: Mapping[str, Any],
    missing: Mapping[Key, core.Missing],
    touched: set[Key],
    index: MissingLines,
    sizes: Mapping[Any, int],
    folders: Folders,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the alternatives entries (the last ones of untouched missing files, with the download size
    of now, and those of the touched ones found again) and the variants memo for verify_inputs.json."""
    basis = artifacts.content_hash({"format": core.FORMAT, "model_cache": core._stat_key(state / "model_cache.json")})
    last_memo = previous.get("variants")
    if last_memo is None or last_memo["basis"] != basis:
        raise Full("the variants memo is of another model cache")
    memo = core.VariantMemo(basis, set(last_memo["none"]), set(last_memo["some"]))
    memo.listed = {(a["folder"], a["name"]): a["variants"] for a in last["alternatives"]}
    # The variants of a file not known before are looked for in its folder: only those folders are read.
    unknown = {entry.folder for entry in missing.values() if memo.get(core.entry_key(entry), entry) is None}
    groups = {folder: {"files": got} for folder in unknown if folder and (got := folders.files(folder)) is not None}
    variant_index = VariantIndex.from_cache({"folders": groups})
    out = core.variant_entries(missing, variant_index, sizes, memo)
    for entry in last["alternatives"]:
        key = (entry["folder"], lookup_key(entry["name"]))
        if key not in touched:
            out.append({**entry, "download_size": sizes.get(key)})
    out.sort(key=lambda e: (-len(e["workflows"]), e["folder"] or "", e["name"]))
    dropped = {before[0] for key in touched if (before := index.get(key)) is not None}
    none = _updated(last_memo["none"], dropped, [k for k, has in memo.answered.items() if not has])
    some = _updated(last_memo["some"], dropped, [k for k, has in memo.answered.items() if has])
    return out, {"basis": basis, "none": none, "some": some}


#: More keys added than this: ``_updated`` sorts them all (each insertion moves the keys after it).
_INSERTS_MAX = 64


def _updated(last: list[str], dropped: set[str], added: list[str]) -> list[str]:
    """Return ``sorted((set(last) - dropped) | set(added))``: ``last`` as the last verify wrote it (sorted, each
    key once: checked), a few keys taken out and put in, instead of a sort of tens of thousands of keys."""
    if len(added) > _INSERTS_MAX or any(a >= b for a, b in itertools.pairwise(last)):
        return sorted((set(last) - dropped) | set(added))
    out = [k for k in last if k not in dropped] if dropped else list(last)
    for key in sorted(set(added)):
        at = bisect.bisect_left(out, key)
        if at == len(out) or out[at] != key:
            out.insert(at, key)
    return out


def _next_memo(
    memo: Memo,
    lines: _Lines,
    record: core.FoundRecord,
    targets: Mapping[str, core.Target],
    touched_paths: set[str],
    missing: Mapping[Key, core.Missing],
    touched_keys: set[Key],
    index: MissingLines,
    locator: Locator,
) -> Memo:
    """Return the memo of this verify: the last one with the touched files' lines made again."""
    id_of = dict(zip(lines.paths, lines.ids, strict=True))
    kept_targets = {p: ids for p, ids in memo.targets.items() if p not in touched_paths}
    for path, target in targets.items():
        kept_targets[path] = sorted((id_of[w] for w in target.workflows), key=lines.position.__getitem__)
    for key in touched_keys:
        index.pop(key)
        entry = missing.get(key)
        if entry is not None:
            index.put(key, core.entry_key(entry), [id_of[w] for w in entry.workflows])
    old_at = {line_id: i for i, line_id in enumerate(memo.ids)}
    shares = [orjson.dumps(lines.fresh[i][1:]) if i in lines.fresh else memo.share(old_at[i]) for i in lines.ids]
    return Memo(
        memo.basis,
        [],
        record.lines,
        lines.ids,
        lines.digests,
        lines.paths,
        kept_targets,
        index,
        memo.folders,  # the model cache is the memo's (its basis): its folders as they were, copied
        locator.to_json(),
        shares,
    )
