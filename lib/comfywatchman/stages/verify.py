"""Verify: is each installed file the file the workflow wants, and is a missing file already on disk in
another precision? Reads ``scan.json``, ``model_cache.json`` and (when there) ``search.json`` and the download
queue; writes ``state/verify.json`` and keeps hashes in ``state/hashes.json``.

- Drift: an installed file whose sha256 differs from the sha256 a workflow declares for it
  (``properties.models[].hash``), or that a search source publishes for that name, or that is cut short
  (a ``.safetensors`` header that does not fit, or fewer bytes than published). Only files a workflow declares
  a hash for are hashed; each at most once per version (``hashing.HashStore``); at most
  ``[verify] hash_budget_bytes`` per cycle, the rest in later cycles (most needed first).
- Alternatives: for each missing file, installed variants of it in the same folder type
  (``comfy.variants``), with the widget value to pick instead and what differs.

A cycle where nothing changed (same scan, model cache and search answers, every file as it was hashed, nothing
pending) leaves ``verify.json`` as it is after a handful of ``stat`` calls; one where a few workflows changed
(and the model cache, the FOUND answers and the settings did not, nothing is pending) works out again only the
files they name (``verify_delta``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from comfywatchman import artifacts, hashing, lazy
from comfywatchman.comfy.variants import VariantIndex, loader_of
from comfywatchman.errors import ArtifactError
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.stages.scan_parts import ScanParts
from comfywatchman.stages.verify_inputs import ARTIFACT as ARTIFACT  # verify_delta reads these here too
from comfywatchman.stages.verify_inputs import FORMAT as FORMAT
from comfywatchman.stages.verify_inputs import FOUND_MARK, standing
from comfywatchman.stages.verify_inputs import INPUTS as INPUTS
from comfywatchman.stages.verify_inputs import _stat_key as _stat_key
from comfywatchman.stages.verify_inputs import digest_of_stats as digest_of_stats
from comfywatchman.workflow import names

if TYPE_CHECKING:
    from comfywatchman.stages import verify_delta
else:
    # Imported when first used (a verify where nothing changed returns before it); it reads this module at
    # call time.
    verify_delta = lazy.module("comfywatchman.stages.verify_delta")

logger = logging.getLogger(__name__)

SCHEMA = "verify"
PARTS_FILE = "verify_parts.pack"  # what verify takes from each workflow of scan.json (``ScanParts``)


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class Expectation:
    """One hash a file should have, where it says so, and the workflows that rely on it."""

    __slots__ = ("sha256", "size", "source", "url", "workflows")

    sha256: str
    source: str  # declared | search
    url: str | None
    size: int | None  # published size, when the source gives one
    workflows: set[str]

    def __init__(
        self, sha256: str, source: str, url: str | None, size: int | None = None, workflows: set[str] | None = None
    ) -> None:
        self.sha256, self.source, self.url, self.size = sha256, source, url, size
        self.workflows = set() if workflows is None else workflows


class Target:
    """An installed file that some workflow (or search source) gives a hash for."""

    __slots__ = ("expectations", "folder", "installed_as", "path")

    path: str
    folder: str
    installed_as: str
    expectations: dict[str, Expectation]

    def __init__(
        self, path: str, folder: str, installed_as: str, expectations: dict[str, Expectation] | None = None
    ) -> None:
        self.path, self.folder, self.installed_as = path, folder, installed_as
        self.expectations = {} if expectations is None else expectations

    @property
    def workflows(self) -> set[str]:
        return {w for e in self.expectations.values() for w in e.workflows}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _sha256(value: Any, kind: Any) -> str | None:
    """Return ``value`` as a lower-case sha256 when it is one (``kind`` sha256 or unset), else None."""
    if not isinstance(value, str) or (isinstance(kind, str) and kind.strip().lower() not in ("sha256", "")):
        return None
    text = value.strip().lower()
    return text if _HEX64.fullmatch(text) else None


class FileLocator:
    """``(folder, name)`` -> absolute path of each installed file (the first directory wins, as in ComfyUI);
    a folder's names indexed when it is first asked about, paths joined only for the files asked about."""

    def __init__(self, model_cache: Mapping[str, Any]) -> None:
        self._groups = model_cache["folders"]
        self._where: dict[str, dict[str, int]] = {}  # folder -> name -> index of its directory
        self._joined: dict[tuple[str, str], str] = {}

    def _names(self, folder: str) -> dict[str, int]:
        where = self._where.get(folder)
        if where is None:
            group = self._groups.get(folder)
            files = group["files"] if group is not None else ()
            # Built from the last file to the first, so that a name's first directory is the one kept.
            where = self._where[folder] = dict(
                zip([e["name"] for e in reversed(files)], [e["dir"] for e in reversed(files)], strict=True)
            )
        return where

    def get(self, key: tuple[str, str]) -> str | None:
        """Return the absolute path of ``(folder, name)``, or None when the cache has no such file."""
        path = self._joined.get(key)
        if path is None:
            folder, name = key
            index = self._names(folder).get(name)
            if index is None:
                return None
            # Kept: a file many workflows declare is asked about once per workflow.
            path = self._joined[key] = os.path.join(self._groups[folder]["paths"][index], name)
        return path


_FOUND = FOUND_MARK


def _line_key(body: bytes) -> str:
    """Return the digest a result line of search.json is known by between cycles (``FoundRecord``)."""
    return hashlib.sha256(body).hexdigest()[:32]


class FoundRecord:
    """The lines of search.json that can hold a FOUND result, each as ``[digest, kept fields or None]`` in file
    order (None: the line holds the words in an attempt only); ``complete`` is False when search.json is in
    another layout (then nothing is recorded)."""

    __slots__ = ("complete", "lines")

    lines: list[list[Any]]
    complete: bool

    def __init__(self, lines: list[list[Any]] | None = None, complete: bool = True) -> None:
        self.lines = [] if lines is None else lines
        self.complete = complete


def _found_items(
    path: Path, known: Mapping[str, Any] | None = None, record: FoundRecord | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the FOUND results of search.json at ``path``, each validated: in the one-result-per-line layout
    the search writes, only the lines that can hold one are parsed (a result's status is written
    ``"status":"FOUND"``), bar those ``known`` gives by their digest (what the line gave when it was read
    before: the kept fields or None); another layout is read whole (``artifacts.Assembled``). Each line that
    can hold one goes into ``record``."""
    reader = artifacts.Assembled(path, "results", "search", "result")
    data = path.read_bytes()
    first = data.find(b"\n")
    if first < 0 or not data.endswith(b'"results":[', 0, first):
        if record is not None:
            record.complete = False
        yield from (r for r in reader.items() if r["status"] == "FOUND")
        return
    # The list ends at the line that starts with "]", the last line (a result, and the rest of the head, is
    # compact JSON on one line: no newline inside): found from the end, not through every newline before it.
    # Only the lines with the words are looked at, found by a search of the bytes, not line by line.
    stop = data.rfind(b"\n]", first)
    if stop < 0:
        raise ArtifactError(f"{path}: ends inside its list 'results' (a torn write?)")
    number, counted = 1, 0  # the line number of the byte ``counted`` (for the errors of ``item_line``)
    at = data.find(_FOUND, first, stop)
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        body = data[start:end].removesuffix(b",")
        digest = _line_key(body) if known is not None or record is not None else ""
        if known is not None and digest in known:
            kept = known[digest]
        else:
            number, counted = number + data.count(b"\n", counted, start), start
            item = artifacts.item_line(body, number, path, "search", "result")
            kept = _kept(item) if item["status"] == "FOUND" else None
        if record is not None:
            record.lines.append([digest, kept])
        if kept is not None:
            yield kept
        at = data.find(_FOUND, end, stop)


def _kept(result: Mapping[str, Any]) -> dict[str, Any]:
    """Return what verify uses of a FOUND result."""
    return {k: result.get(k) for k in ("name", "type", "status", "sha256", "url", "size")}


def found_results(
    path: Path, outcome: StageOutcome, record: FoundRecord | None = None
) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Return ``(type, lookup key)`` -> the FOUND results of search.json at ``path`` (the only answers verify
    uses: a published sha256 and size), read one result at a time; empty when there is no search.json, and
    the outcome failed naming the file when it is broken. The lines read go into ``record``."""
    if not path.exists():
        return {}
    try:
        return results_of(_found_items(path, record=record))
    except (ArtifactError, OSError) as exc:
        outcome.fail(str(exc) if isinstance(exc, ArtifactError) else f"{path}: unreadable: {exc.strerror or exc}")
        if record is not None:
            record.complete = False
        return {}


def results_of(found: Iterable[Mapping[str, Any]]) -> dict[tuple[str | None, str], dict[str, Any]]:
    """Return ``(type, lookup key)`` -> the kept fields of each of the FOUND results ``found`` (the last wins)."""
    out: dict[tuple[str | None, str], dict[str, Any]] = {}
    for result in found:
        out[(result["type"], names.lookup_key(result["name"]))] = _kept(result)
    return out


class Locator(Protocol):
    """What ``targets`` asks where files are: ``FileLocator`` or one that keeps its answers."""

    def get(self, key: tuple[str, str]) -> str | None: ...


def targets(
    scan: Mapping[str, Any],
    paths: Locator,
    results: Mapping[tuple[str | None, str], Mapping[str, Any]],
) -> dict[str, Target]:
    """Return absolute path -> Target for each installed file with a declared (or published) sha256."""
    out: dict[str, Target] = {}
    expected = _Expected(results)
    where: dict[tuple[str, str], str | None] = {}  # kept for this call, as ``_Expected`` keeps its own
    for workflow in scan["workflows"]:
        for model in workflow.get("installed_models", ()):
            folder, installed_as = model["folder"], model["installed_as"]
            wanted = expected.of(model)
            if not wanted or folder is None:
                continue
            # A server's combo list writes Windows subfolders with "\\"; the cache writes "/".
            asked = (folder, installed_as)
            if asked in where:
                path = where[asked]
            else:
                path = where[asked] = paths.get((folder, names.normalize(installed_as)))
            if path is None:
                continue  # a server-listed file this machine cannot reach
            target = out.get(path)
            if target is None:
                target = out[path] = Target(path, folder, installed_as)
            for sha, source, url, size in wanted:
                kept = target.expectations.get(sha)
                if kept is None:
                    kept = target.expectations[sha] = Expectation(sha, source, url, size)
                kept.workflows.add(workflow["workflow"])
                kept.url = kept.url or url
                kept.size = kept.size or size
    return out


class _Expected:
    """The hashes expected of the installed models of scan.json (``targets``). The same files come back in
    workflow after workflow (3,734 models of 1,531 files at 2,000 workflows): what is worked out from a name or
    a declared value alone is kept."""

    def __init__(self, results: Mapping[tuple[str | None, str], Mapping[str, Any]]) -> None:
        self.results = results
        self.shas: dict[str, str | None] = {}
        self.keys: dict[str, str] = {}

    def of(self, model: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
        """Return ``(sha256, source, url, size)`` of each ``Expectation`` of the installed ``model``: its declared
        hashes, then the one a FOUND answer of ``results`` publishes."""
        wanted: list[tuple[str, str, Any, Any]] = []
        for d in model.get("declared", ()):
            value = d.get("sha256")
            if isinstance(value, str):
                sha = self.shas.get(value, "")
                if sha == "":
                    sha = self.shas[value] = _sha256(value, "sha256")
            else:
                sha = _sha256(value, "sha256")
            if sha is not None:
                wanted.append((sha, "declared", d.get("url"), None))
        if self.results:
            name = model["name"]
            key = self.keys.get(name)
            if key is None:
                key = self.keys[name] = names.lookup_key(name)
            found = self.results.get((model["folder"], key))
            if found is not None and found["status"] == "FOUND":
                sha = _sha256(found.get("sha256"), "sha256")
                if sha is not None:
                    wanted.append((sha, "search", found.get("url"), found.get("size")))
        return wanted


class Progress:
    """How much of the declared files is verified, and what this cycle hashed."""

    # No __slots__: ``to_json`` starts from the instance's __dict__, its keys in the order __init__ sets them.
    files_verified: int
    files_pending: int
    bytes_verified: int
    bytes_pending: int
    hashed_files: int
    hashed_bytes: int
    hash_seconds: float

    def __init__(
        self,
        files_verified: int = 0,
        files_pending: int = 0,
        bytes_verified: int = 0,
        bytes_pending: int = 0,
        hashed_files: int = 0,
        hashed_bytes: int = 0,
        hash_seconds: float = 0.0,
    ) -> None:
        self.files_verified = files_verified
        self.files_pending = files_pending
        self.bytes_verified = bytes_verified
        self.bytes_pending = bytes_pending
        self.hashed_files = hashed_files
        self.hashed_bytes = hashed_bytes
        self.hash_seconds = hash_seconds

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["hash_seconds"] = round(self.hash_seconds, 3)
        data["files_declared"] = self.files_verified + self.files_pending
        return data


def hash_within_budget(
    found: Mapping[str, Target],
    stats: Mapping[str, hashing.Stat],
    store: hashing.HashStore,
    budget: int,
    now_text: str,
    clock: Any = time.perf_counter,
    heads: dict[str, bytes] | None = None,
) -> tuple[dict[str, str], Progress, list[str]]:
    """Return path -> sha256 of each target known now (kept, or hashed this cycle within ``budget`` bytes),
    the progress, and one error line per unreadable file. Most-needed files are hashed first; a file is
    started only when it fits in what is left of the budget, but the first one always is (else a file larger
    than the budget would never be verified); a budget of 0 hashes nothing. The first bytes of each file
    hashed go into ``heads`` (for ``drift_findings``)."""
    known: dict[str, str] = {}
    errors: list[str] = []
    progress = Progress()
    pending: list[Target] = []
    for path, target in found.items():
        stat = stats.get(path)
        if stat is None:
            continue
        kept = store.get(path, stat)
        if kept is not None:
            known[path] = kept
        else:
            pending.append(target)
    pending.sort(key=lambda t: (-len(t.workflows), t.path))
    started = clock()
    for target in pending:
        stat = stats[target.path]
        if budget <= 0 or (progress.hashed_files and progress.hashed_bytes + stat.size > budget):
            break
        try:
            sha, head = hashing.file_sha256_head(target.path, stat.size)
        except OSError as exc:
            errors.append(f"{target.path}: cannot be read to verify it: {exc.strerror or exc}")
            continue
        if hashing.stat_of(target.path) != stat:
            continue  # changed while it was read (still downloading?): hashed again next cycle
        if heads is not None:
            heads[target.path] = head
        store.put(target.path, stat, sha, now_text)
        known[target.path] = sha
        progress.hashed_files += 1
        progress.hashed_bytes += stat.size
    progress.hash_seconds = clock() - started
    for path, stat in stats.items():
        if path in known:
            progress.files_verified += 1
            progress.bytes_verified += stat.size
        else:
            progress.files_pending += 1
            progress.bytes_pending += stat.size
    return known, progress, errors


def _truncated(
    target: Target, stat: hashing.Stat, expected: Expectation, heads: Mapping[str, bytes] | None = None
) -> bool:
    if expected.size is not None and stat.size < expected.size:
        return True
    if not target.path.lower().endswith(".safetensors"):
        return False
    head = heads.get(target.path) if heads else None
    if head is not None and (len(head) >= 8 or stat.size < 8):
        # Its first bytes as read when it was hashed this cycle, at this very size and mtime: not read again.
        return hashing.safetensors_truncated_head(head, stat.size)
    try:
        return hashing.safetensors_truncated(target.path, stat.size)
    except OSError:
        return False


def drift_findings(
    found: Mapping[str, Target],
    stats: Mapping[str, hashing.Stat],
    known: Mapping[str, str],
    heads: Mapping[str, bytes] | None = None,
) -> list[dict[str, Any]]:
    """Return one finding per (file, expected hash) the file does not have: ``mismatch`` when its sha256
    differs, ``truncated`` when it is shorter than published or its safetensors header does not fit (found
    before it is hashed; ``heads``: the first bytes of the files hashed this cycle, ``hash_within_budget``)."""
    out = []
    for path in sorted(found):
        target, stat = found[path], stats.get(path)
        if stat is None:
            continue
        actual = known.get(path)
        for expected in target.expectations.values():
            if actual == expected.sha256:
                continue
            truncated = _truncated(target, stat, expected, heads)
            if actual is None and not truncated:
                continue  # not hashed yet
            out.append(
                {
                    "folder": target.folder,
                    "installed_as": target.installed_as,
                    "path": path,
                    "size": stat.size,
                    "kind": "truncated" if truncated else "mismatch",
                    "expected_sha256": expected.sha256,
                    "expected_size": expected.size,
                    "actual_sha256": actual,
                    "hash_source": expected.source,
                    "url": expected.url,
                    "workflows": sorted(expected.workflows),
                }
            )
    return out


def _download_sizes(results: Iterable[Mapping[str, Any]], queue: Mapping[str, Any] | None) -> dict[Any, int]:
    sizes: dict[Any, int] = {}
    for task in (queue or {}).get("tasks", ()):
        if task.get("size"):
            sizes[(task["folder"], names.lookup_key(task["name"]))] = task["size"]
    for result in results:
        if result["status"] == "FOUND" and result.get("size"):
            sizes[(result["type"], names.lookup_key(result["name"]))] = result["size"]
    return sizes


class Missing:
    """A missing file: its folder and name as first written, the loader that first names it, and the
    workflows that miss it (each once, in scan order)."""

    __slots__ = ("folder", "loader", "name", "workflows")

    folder: str | None
    name: str
    loader: str | None
    workflows: list[str]

    def __init__(self, folder: str | None, name: str, loader: str | None, workflows: list[str] | None = None) -> None:
        self.folder, self.name, self.loader = folder, name, loader
        self.workflows = [] if workflows is None else workflows


def add_missing(
    table: dict[tuple[str | None, str], Missing], workflow: Mapping[str, Any], count_inactive: bool
) -> None:
    """Add the missing files of one scan.json ``workflow`` to ``table`` (see ``add_missing_part``)."""
    path, *_, missing = verify_part(workflow)
    add_missing_part(table, path, missing, count_inactive)


def add_missing_part(
    table: dict[tuple[str | None, str], Missing], path: str, missing: Iterable[list[Any]], count_inactive: bool
) -> None:
    """Add the ``missing`` files of the workflow at ``path`` (``verify_part``) to ``table``: ``(folder, lookup
    key)`` -> its ``Missing``."""
    for folder, name, active, loader, name_key in missing:
        if not (active or count_inactive):
            continue
        key = (folder, name_key)
        entry = table.get(key)
        if entry is None:
            table[key] = Missing(folder, name, loader, [path])
        elif not entry.workflows or entry.workflows[-1] != path:  # a workflow's files come together
            entry.workflows.append(path)


class VariantMemo:
    """The variants of missing files found by the last verify under the same model cache (``basis``): the
    keys (``entry_key``) of the files that had none and of those that had some (their variants are in the last
    verify.json's ``alternatives``, ``listed``); and the keys answered this cycle, for the next one."""

    __slots__ = ("answered", "basis", "keys", "listed", "none", "some")

    basis: str
    none: set[str]
    some: set[str]
    listed: dict[tuple[str | None, str], list[dict[str, Any]]]
    answered: dict[str, bool]
    keys: dict[tuple[str | None, str], str]  # the ``entry_key`` of each file asked

    def __init__(
        self,
        basis: str,
        none: set[str] | None = None,
        some: set[str] | None = None,
        listed: dict[tuple[str | None, str], list[dict[str, Any]]] | None = None,
        answered: dict[str, bool] | None = None,
        keys: dict[tuple[str | None, str], str] | None = None,
    ) -> None:
        self.basis = basis
        self.none = set() if none is None else none
        self.some = set() if some is None else some
        self.listed = {} if listed is None else listed
        self.answered = {} if answered is None else answered
        self.keys = {} if keys is None else keys

    def get(self, key: str, entry: Missing) -> list[dict[str, Any]] | None:
        """Return the variants known for the missing file ``entry`` (key ``key``), or None when unknown."""
        if key in self.none:
            return []
        return self.listed.get((entry.folder, entry.name)) if key in self.some else None

    def to_json(self) -> dict[str, Any]:
        """Return what the next cycle needs (``verify_inputs.json``, ``variants``)."""
        return {
            "basis": self.basis,
            "none": sorted(k for k, some in self.answered.items() if not some),
            "some": sorted(k for k, some in self.answered.items() if some),
        }


def entry_key(entry: Missing) -> str:
    """Return the key of what a missing file's variants are found from: its folder, name and loader."""
    text = orjson.dumps([entry.folder, entry.name, entry.loader])
    return hashlib.blake2b(text, digest_size=12).hexdigest()


def variant_memo(state: Path, previous: Mapping[str, Any] | None) -> VariantMemo:
    """Return the variants the last verify found, when made under the model cache as it is now and its
    verify.json is the one it wrote; else an empty memo."""
    basis = artifacts.content_hash({"format": FORMAT, "model_cache": _stat_key(state / "model_cache.json")})
    memo = VariantMemo(basis)
    last = (previous or {}).get("variants")
    if previous is None or last is None or last["basis"] != basis:
        return memo
    try:
        document = artifacts.read_optional(state / ARTIFACT, SCHEMA)
    except ArtifactError:
        return memo
    if document is None or document["fingerprint"] != previous["fingerprint"]:
        return memo
    memo.none, memo.some = set(last["none"]), set(last["some"])
    memo.listed = {(a["folder"], a["name"]): a["variants"] for a in document["alternatives"]}
    return memo


def variant_entries(
    table: Mapping[tuple[str | None, str], Missing],
    index: VariantIndex,
    sizes: Mapping[Any, int],
    memo: VariantMemo | None = None,
) -> list[dict[str, Any]]:
    """Return one entry per missing file of ``table`` (``add_missing``) that has installed variants: the
    variants, the workflows that miss the file, and the download size a variant would save (null when
    unknown); most workflows first. Variants ``memo`` knows are not looked for again."""
    out = []
    memo_keys = {key: entry_key(entry) for key, entry in table.items()} if memo is not None else {}
    if memo is not None:
        memo.keys = memo_keys
    if memo is not None and (memo.none or memo.some):
        known = {key: memo.get(memo_keys[key], entry) for key, entry in table.items()}
    else:  # nothing known (a first verify, or the model cache changed): no file to ask the memo about
        known = dict.fromkeys(table)
    # How many files are looked up per folder: a folder asked about a few times is not indexed whole.
    asked = [key for key, entry in table.items() if known[key] is None]
    index.expect(Counter(folder for key in asked if (folder := table[key].folder)))
    # Looked up together: most have no installed file with their name key, found without splitting the name.
    answers = index.variants_of([(table[key].name, table[key].folder, table[key].loader) for key in asked])
    answered = dict(zip(asked, answers, strict=True))
    for key, entry in table.items():
        found = known[key]
        if found is None:
            found = answered[key]
        if memo is not None:
            memo.answered[memo_keys[key]] = bool(found)
        if found:
            out.append(
                {
                    "folder": entry.folder,
                    "name": entry.name,
                    "download_size": sizes.get(key),
                    "variants": found,
                    "workflows": sorted(entry.workflows),
                }
            )
    return sorted(out, key=lambda e: (-len(e["workflows"]), e["folder"] or "", e["name"]))


def alternatives(
    scan: Mapping[str, Any], index: VariantIndex, sizes: Mapping[Any, int], count_inactive: bool
) -> list[dict[str, Any]]:
    """Return ``variant_entries`` of every missing file of the scan.json document ``scan``."""
    table: dict[tuple[str | None, str], Missing] = {}
    for workflow in scan["workflows"]:
        add_missing(table, workflow, count_inactive)
    return variant_entries(table, index, sizes)


#: What verify keeps of each scan.json workflow (``verify_part``): bump when that changes.
PARTS_TAG = "verify-parts-4"


# Separators of the installed models without a declared hash in a part: characters no file name can hold.
_FIELD, _ROW = "\x00", "\x01"
# ``lookup_key`` of the installed models' names: the same few thousand names come back in workflow after workflow
# (33,616 installed models of 10,287 names at 2,000 workflows), and a key is a pure function of its name.
_lookup_keys: dict[str, str] = {}
_LOOKUP_KEYS_MAX = 1 << 17


def forget_lookup_keys() -> None:
    """Forget the lookup keys ``verify_part`` kept (once a pass over scan.json is done: they are not held into
    the stages after it)."""
    _lookup_keys.clear()


def verify_part(workflow: Mapping[str, Any]) -> list[Any]:
    """Return what verify takes from one scan.json workflow entry (plain JSON, kept between cycles by
    ``ScanParts``): ``[path, declared, other_keys, other_names, missing]``. ``declared``: each installed model
    that declares a hash, ``[folder, name, installed_as, declared]``; every other installed model (a search
    answer may still give a hash for one) in two strings of rows, so that the part stays small and is matched
    against the answers as a set: ``other_keys`` (folder and lookup key), ``other_names`` (name and
    installed_as); ``missing``: each missing file ``[folder, name, active, loader, lookup key]``."""
    declared, keys, rows = [], [], []
    key_of = _lookup_keys
    if len(key_of) > _LOOKUP_KEYS_MAX:  # a long-running process sees ever more names: the memo stays small
        key_of.clear()
    for m in workflow.get("installed_models", ()):
        if m.get("declared"):
            declared.append([m["folder"], m["name"], m["installed_as"], m["declared"]])
        elif m["folder"] is not None:  # a file of no known folder type is never verified
            name = m["name"]
            key = key_of.get(name)
            if key is None:
                # Not the search's memoised lookup_key (as in search.missing_part): this memo is let go after.
                key = key_of[name] = names.lookup_key(name)
            keys.append(m["folder"] + _FIELD + key)
            rows.append(name + _FIELD + m["installed_as"])
    missing = [
        [m["folder"], m["name"], m["active"], loader_of(m["origins"]), names.lookup_key(m["name"])]
        for m in workflow.get("models", ())
        if m["status"] == "missing"
    ]
    return [workflow["workflow"], declared, _ROW.join(keys), _ROW.join(rows), missing]


class Shares:
    """Each workflow's path and share (``contribution``: ``[rows, missing]``) as a line of JSON, all in one
    buffer: they are needed again only when a later cycle's changes touch the workflow (``verify_delta``)."""

    __slots__ = ("body", "paths")

    paths: list[str]
    body: bytearray

    def __init__(self, paths: list[str] | None = None, body: bytearray | None = None) -> None:
        self.paths = [] if paths is None else paths
        self.body = bytearray() if body is None else body

    def add(self, path: str, rows: list[list[Any]], missing: list[list[Any]]) -> None:
        """Add the share of the workflow at ``path``."""
        self.paths.append(path)
        self.body += orjson.dumps([rows, missing])
        self.body += b"\n"


class ScanNeeds:
    """What verify takes from scan.json, gathered one workflow at a time: the installed models a sha256 may be
    expected for, as a scan-like document for ``targets``, and the missing files (``add_missing_part``)."""

    __slots__ = ("installed", "missing")

    installed: dict[str, Any]
    missing: dict[tuple[str | None, str], Missing]

    def __init__(self, installed: dict[str, Any], missing: dict[tuple[str | None, str], Missing]) -> None:
        self.installed, self.missing = installed, missing


def scan_needs(
    parts: Iterable[list[Any]],
    results: Mapping[tuple[str | None, str], Mapping[str, Any]],
    count_inactive: bool,
    record: Shares | None = None,
) -> ScanNeeds:
    """Return what verify needs of scan.json's workflows (their ``verify_part``, one at a time): only installed
    models that declare a hash or have a FOUND answer in ``results``, and the missing files. Each workflow's
    path and share (``contribution``) go into ``record`` when given."""
    kept: list[dict[str, Any]] = []
    missing: dict[tuple[str | None, str], Missing] = {}
    answered = answered_keys(results)
    for part in parts:
        path, rows, missing_files = contribution(part, answered)
        if record is not None:
            record.add(path, rows, missing_files)
        if rows:
            kept.append(installed_entry(path, rows))
        add_missing_part(missing, path, missing_files, count_inactive)
    return ScanNeeds({"workflows": kept}, missing)


def answered_keys(results: Mapping[tuple[str | None, str], Mapping[str, Any]]) -> set[str]:
    """Return the ``other_keys`` rows (``verify_part``) that ``results`` has an answer for."""
    return {_FIELD.join((folder, key)) for folder, key in results if folder is not None}


def contribution(part: list[Any], answered: set[str]) -> tuple[str, list[list[Any]], list[list[Any]]]:
    """Return what one workflow's ``verify_part`` gives verify when ``answered`` are the answered keys
    (``answered_keys``): its path, ``[folder, name, installed_as, declared]`` of each installed model that
    declares a hash or is answered, and its missing files."""
    path, declared, other_keys, other_names, missing_files = part
    rows: list[list[Any]] = [list(d) for d in declared]
    keys = other_keys.split(_ROW) if answered and other_keys else []
    hits = answered.intersection(keys)
    names_of = other_names.split(_ROW) if hits else []
    for index in [i for i, key in enumerate(keys) if key in hits] if hits else ():
        name, installed_as = names_of[index].split(_FIELD)
        rows.append([keys[index].split(_FIELD, 1)[0], name, installed_as, []])
    return path, rows, missing_files


def installed_entry(path: str, rows: Iterable[list[Any]]) -> dict[str, Any]:
    """Return the scan-like workflow entry ``targets`` reads for the ``contribution`` rows of ``path``."""
    models = [{"folder": f, "name": n, "installed_as": i, "declared": d} for f, n, i, d in rows]
    return {"workflow": path, "installed_models": models}


def _read_optional(path: Path, schema: str, outcome: StageOutcome) -> Any:
    try:
        return artifacts.read_optional(path, schema)
    except ArtifactError as exc:
        outcome.fail(str(exc))
        return None


def verified(
    ctx: StageContext,
    previous: Mapping[str, Any] | None,
    wanted: str,
    searched: Mapping[str, Any] | None = None,
) -> StageOutcome:
    """Verify declared hashes within the cycle's budget and list variants of missing files, writing verify.json
    (the stage's runner, ``verify_inputs.run``, calls it when its check that nothing changed fails), from the last
    ``verify_inputs.json`` (``previous``) for the inputs fingerprinted ``wanted``, with the search's files they
    were made from (``verify_inputs.search_files``: kept for the next cycle's check); return the outcome."""
    outcome = StageOutcome("verify")
    state = ctx.state_dir
    settings = ctx.config.section("verify")
    count_inactive = bool(ctx.config.section("scan")["count_inactive_nodes"])
    settings_key = {**settings, "count_inactive": count_inactive}
    now_text = ctx.now().isoformat(timespec="seconds")
    again = verify_delta.verify_again(state, previous, settings_key, count_inactive)
    memo_next: verify_delta.Memo | None
    if again is not None:
        store, progress, drift, alts = again.store, again.progress, again.drift, again.alternatives
        checked, stats_text, variants, memo_next = again.paths, again.stats, again.variants, again.memo
        store.save()
        logger.info("verify: made from the last verify: %d lines of scan.json changed", again.changed)
    else:
        store, progress, drift, alts, checked, stats_text, variants, memo_next = _full(
            outcome, state, settings, settings_key, count_inactive, previous, now_text
        )
    outcome.counts = {
        "hashed_files": progress.hashed_files,
        "hashed_bytes": progress.hashed_bytes,
        "files_verified": progress.files_verified,
        "files_pending": progress.files_pending,
        "drift": len(drift),
        "alternatives": len(alts),
    }
    outcome.detail = (
        f"{progress.hashed_files} files hashed ({progress.hashed_bytes / 1e9:.2f} GB in "
        f"{progress.hash_seconds:.1f} s); {standing(outcome.counts)}"
    )
    document = {
        "cycle_id": ctx.cycle_id,
        "generated_at": now_text,
        "fingerprint": wanted,
        "budget_bytes": int(settings["hash_budget_bytes"]),
        "progress": progress.to_json(),
        "drift": drift,
        "alternatives": alts,
        "counts": outcome.counts,
        "detail": outcome.detail,
    }
    artifacts.write(state / ARTIFACT, document, SCHEMA, indent=None)
    inputs = {
        "cycle_id": ctx.cycle_id,
        "fingerprint": wanted,
        "files_pending": progress.files_pending,
        "paths": checked,
        "stats": stats_text,
        "counts": outcome.counts,
        "detail": outcome.detail,
        "variants": variants,
    }
    if searched is not None:
        inputs["search_files"] = dict(searched)
    # Not flushed to disk (durable False): a cache, safe to lose. One a power cut left empty or torn is not read
    # (verified afresh), and an older one goes with neither this verify.json nor the memo (fingerprint, stats).
    artifacts.write(state / INPUTS, inputs, "verify_inputs", indent=None, durable=False)
    verify_delta.save(state / verify_delta.FILE, memo_next, state)
    logger.info("verify: %s", outcome.detail)
    return outcome


def _full(
    outcome: StageOutcome,
    state: Path,
    settings: Mapping[str, Any],
    settings_key: Mapping[str, Any],
    count_inactive: bool,
    previous: Mapping[str, Any] | None,
    now_text: str,
) -> tuple[
    hashing.HashStore,
    Progress,
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[str],
    str,
    dict[str, Any],
    verify_delta.Memo | None,
]:
    """Verify from every workflow of scan.json: hash within the budget (the store saved), find drift and
    variants; return the store, progress, drift, alternatives, the files checked and their stats digest,
    the variants memo, and the memo for the next verify (None when none can be made)."""
    record = FoundRecord()
    results = found_results(state / "search.json", outcome, record)
    queue = _read_optional(state / "download_queue.json", "download_queue", outcome)
    parts = ScanParts(state / PARTS_FILE, PARTS_TAG, verify_part)
    shares = Shares()
    needs = scan_needs(parts.read(state / "scan.json"), results, count_inactive, shares)
    forget_lookup_keys()
    digests = parts.digests
    del parts  # its pack's lines, held for the scan.json just read: not needed past this point
    model_cache = artifacts.read(state / "model_cache.json", "model_cache")
    located: dict[tuple[str, str], str | None] = {}
    found = targets(needs.installed, _Asked(FileLocator(model_cache), located), results)
    stats = {p: s for p in found if (s := hashing.stat_of(p)) is not None}
    store = hashing.HashStore(state / hashing.FILE).load()
    heads: dict[str, bytes] = {}
    budget = int(settings["hash_budget_bytes"])
    known, progress, errors = hash_within_budget(found, stats, store, budget, now_text, heads=heads)
    for error in errors:
        outcome.fail(error)
    # Keep the hashes of files still there (a workflow naming them may come back); drop those of removed files.
    store.forget_except(set(found) | {p for p in store.files if p not in found and os.path.exists(p)})
    store.save()
    drift = drift_findings(found, stats, known, heads)
    del heads
    sizes = _download_sizes(results.values(), queue)
    memo = variant_memo(state, previous)
    alts = variant_entries(needs.missing, VariantIndex.from_cache(model_cache), sizes, memo)
    folders = verify_delta.folder_lines(model_cache)
    del model_cache  # tens of thousands of entries: freed before the memo is made
    checked = sorted(found)
    basis = verify_delta.basis_of(state, settings_key)
    memo_next = verify_delta.memo_of(basis, record, digests, shares, found, needs.missing, located, memo.keys, folders)
    # The files' stats as they were hashed or found hashed (not taken again: a file changed since then differs
    # from them, and the next verify looks at it again).
    checked_stats = digest_of_stats(checked, {path: stats.get(path) for path in checked})
    return store, progress, drift, alts, checked, checked_stats, memo.to_json(), memo_next


class _Asked:
    """A ``FileLocator`` that keeps each answer it gives in ``answers`` (for ``verify_delta``)."""

    def __init__(self, files: FileLocator, answers: dict[tuple[str, str], str | None]) -> None:
        self.files, self.answers = files, answers

    def get(self, key: tuple[str, str]) -> str | None:
        """Return ``FileLocator.get`` of ``key``, kept."""
        path = self.answers[key] = self.files.get(key)
        return path
