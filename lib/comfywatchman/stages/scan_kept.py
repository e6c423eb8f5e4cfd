"""Entries kept from the last ``scan.json`` while the install is unchanged, read a line at a time.

``scan.json`` holds one workflow entry per line (``artifacts.write_assembled``). When the install the last scan
compared with is the one of now, and the file holds the very bytes that scan wrote (validated then), the
entry of an unchanged workflow is its line, copied as it is: only the intake fields and ``reused`` may have to
change. Reading the file keeps, per workflow content hash, where its line is and the little the stage's
counts need, never the entries themselves.

That much is also written beside scan.json, in ``state/scan_lines.json`` (``LinesRecord``): a scan that keeps
most entries reads it and hashes scan.json's bytes instead of parsing every line again. It is used only when
it names the very bytes of scan.json that scan_inputs.json names (the sha256 the scan's ``scan_digests`` record
gives, when it describes this very file, else the file hashed); else the lines are read as before.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.stages import cache_files, scan_digests

logger = logging.getLogger(__name__)

BASE_KEYS = ("workflow", "path", "source", "sha256")
LINES_FILE = "scan_lines.json"
LINES_SCHEMA = "scan_lines"
_FIRST_LINE_END = b'"workflows":[\n'
_NOT_REUSED = b'"reused":false'
_REUSED = b'"reused":true'
_AFTER_REUSED = b',"sha256":"'

# entry -> (missing models (folder, lookup key), missing node types) that count against it
Counter = Callable[[Mapping[str, Any]], tuple[list[tuple[str | None, str]], list[str]]]


class KeptLine(NamedTuple):
    """Where an entry's line is in the last scan.json, what it says of itself, and its counts."""

    offset: int
    length: int
    base: tuple[Any, ...]  # its values of BASE_KEYS
    reused: bool
    missing_models: list[tuple[str | None, str]]
    missing_nodes: list[str]


class KeptEntries:
    """The readable entries of the last scan.json by content hash, read back one line at a time."""

    def __init__(self, path: Path, lines: dict[str, KeptLine], head: dict[str, Any]) -> None:
        self.path = path
        self.lines = lines
        self.head = head  # the last document without its entries (comfyui_root, demo, node_map, ...)
        self._file: IO[bytes] | None = None
        self._by_path: dict[str, KeptLine] | None = None
        #: Whether the last ``text`` is the line as it was, or with ``reused`` set alone (the same
        #: ``scan_parts.line_digest``), rather than the entry encoded again.
        self.copied = False

    @classmethod
    def empty(cls, path: Path) -> KeptEntries:
        """Return a KeptEntries that keeps nothing."""
        return cls(path, {}, {})

    @classmethod
    def read(
        cls,
        path: Path,
        inputs: Mapping[str, Any] | None,
        install: str,
        counter: Counter,
        index: scan_digests.LineIndex | None = None,
    ) -> KeptEntries:
        """Return the entries of the scan.json at ``path`` when the install it was compared with is ``install``
        and its bytes are those the last scan wrote (``inputs``: its scan_inputs.json); else none. ``index``:
        the scan's record of that file (``scan_digests.load``), when already read."""
        if inputs is None or inputs.get("install") != install or not inputs.get("scan_sha256"):
            return cls.empty(path)
        recorded = _from_record(path, path.with_name(LINES_FILE), inputs["scan_sha256"], index)
        if recorded is not None:
            return cls(path, *recorded)
        try:
            lines, head, digest = _index(path, counter)
        except OSError:
            return cls.empty(path)
        except (ValueError, KeyError, TypeError, IndexError):
            logger.info("%s: not one entry per line; every workflow is compared anew", path)
            return cls.empty(path)
        if digest != inputs["scan_sha256"]:
            logger.info("%s: not the file the last scan wrote; every workflow is compared anew", path)
            return cls.empty(path)
        return cls(path, lines, head)

    def get(self, sha256: str) -> KeptLine | None:
        """Return the kept line of content ``sha256``, or None."""
        return self.lines.get(sha256)

    def text(self, kept: KeptLine, base: tuple[Any, ...]) -> bytes:
        """Return the entry of ``kept`` for the workflow whose intake fields (values of BASE_KEYS) are ``base``,
        marked reused: the line as it is when nothing differs, else with ``reused`` or the intake fields set
        anew."""
        if self._file is None:
            # Lines are asked for in the order of the file, mostly: a large buffer serves the next from memory.
            self._file = open(self.path, "rb", buffering=1 << 20)  # noqa: SIM115 (read line by line until close)
        self._file.seek(kept.offset)
        line = self._file.read(kept.length)
        same_base = kept.base == base
        self.copied = same_base
        if same_base and kept.reused:
            return line
        if same_base:
            # The entry's own key is the last one so written, followed by "sha256": keys are sorted, and after
            # "reused" come only the strings sha256, source and workflow (strings escape their quotes). Found
            # from the end, it is a few hundred bytes away, where a search of the whole line is not.
            at = line.rfind(_NOT_REUSED)
            if at >= 0 and line.startswith(_AFTER_REUSED, at + len(_NOT_REUSED)):
                view = memoryview(line)
                return b"".join((view[:at], _REUSED, view[at + len(_NOT_REUSED) :]))
        self.copied = False
        entry = orjson.loads(line)
        entry.update(zip(BASE_KEYS, base, strict=True))
        entry["reused"] = True
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)

    def block(self, start: int, end: int) -> bytes:
        """Return the bytes of the last scan.json from ``start`` to ``end``."""
        if self._file is None:
            self._file = open(self.path, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by close)
        self._file.seek(start)
        return self._file.read(end - start)

    def last_entry(self, path: str) -> dict[str, Any] | None:
        """Return the last scan's entry of the workflow file at ``path`` (whatever its content was then), or
        None when it had none without an error."""
        if self._by_path is None:
            self._by_path = {kept.base[1]: kept for kept in self.lines.values()}
        kept = self._by_path.get(path)
        if kept is None:
            return None
        if self._file is None:
            self._file = open(self.path, "rb", buffering=1 << 20)  # noqa: SIM115 (closed by close)
        self._file.seek(kept.offset)
        entry = orjson.loads(self._file.read(kept.length))
        return entry if isinstance(entry, dict) else None

    def close(self) -> None:
        """Close the file the lines are read from."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _index(path: Path, counter: Counter) -> tuple[dict[str, KeptLine], dict[str, Any], str]:
    """Return the kept lines of the readable entries of ``path``, its head, and the sha256 of its bytes.

    Raise ValueError (or KeyError, TypeError, IndexError) when the file is not one entry per line.
    """
    digest = hashlib.sha256()
    lines: dict[str, KeptLine] = {}
    with open(path, "rb") as handle:
        first = handle.readline()
        digest.update(first)
        if not first.endswith(_FIRST_LINE_END):
            raise ValueError("no entry list opening its first line")
        offset = len(first)
        last = b""
        for line in handle:
            digest.update(line)
            if line.startswith(b"]"):
                last = line
                continue
            item = line.rstrip(b"\n").removesuffix(b",")
            entry = orjson.loads(item)
            if entry["error"] is None:
                models, nodes = counter(entry)
                base = tuple(entry[key] for key in BASE_KEYS)
                lines[entry["sha256"]] = KeptLine(offset, len(item), base, entry["reused"] is True, models, nodes)
            offset += len(line)
    head = orjson.loads(first.rstrip(b"\n") + last)
    return lines, head, digest.hexdigest()


class LinesRecord:
    """What ``state/scan_lines.json`` says of the scan.json being written: each readable entry's place (from
    the end of the first line), intake fields, ``reused`` and counts, added in the order of the file."""

    def __init__(self) -> None:
        self.entries: list[list[Any]] = []
        self.offset = 0  # where the next entry starts, counted from the end of the first line
        self.count = 0

    def add(self, text: bytes, base: tuple[Any, ...], reused: bool, counts: tuple[list[Any], list[str]] | None) -> None:
        """Note one entry written (``AssembledWriter.add``): its text, intake fields (BASE_KEYS), ``reused``,
        and its counts, or None for an entry with an error (never kept, so not recorded)."""
        self.add_length(len(text), base, reused, counts)

    def add_length(
        self, length: int, base: tuple[Any, ...], reused: bool, counts: tuple[list[Any], list[str]] | None
    ) -> None:
        """Note one entry written whose text is ``length`` bytes long (as ``add``)."""
        if counts is not None:
            models, nodes = counts
            self.entries.append([self.offset, length, *base, reused, [list(m) for m in models], list(nodes)])
        self.offset += length + 2  # its text and ",\n" (the last one's "\n" alone)
        self.count += 1

    def document(self, scan_sha256: str) -> dict[str, Any]:
        """Return the scan_lines.json document for the scan.json whose sha256 is ``scan_sha256``."""
        body = self.offset - 1 if self.count else 0
        return {"scan_sha256": scan_sha256, "body_length": body, "entries": self.entries}

    def save(self, path: Path, scan_sha256: str) -> None:
        """Write the document for the scan.json whose sha256 is ``scan_sha256`` to ``path``, validated, as
        ``artifacts.write`` writes it but without waiting for the disk: a cache (``cache_files``), used only
        when it names the bytes scan_inputs.json names, and read back validated, so one that a crash left old,
        empty or torn is ignored."""
        document = self.document(scan_sha256)
        artifacts.validate(document, LINES_SCHEMA, f"{path} (about to be written)")
        cache_files.write_cache(path, orjson.dumps(document, option=orjson.OPT_SORT_KEYS), b"\n")


def _from_record(
    path: Path, record_path: Path, scan_sha256: str, index: scan_digests.LineIndex | None = None
) -> tuple[dict[str, KeptLine], dict[str, Any]] | None:
    """Return the kept lines and head of the scan.json at ``path`` from its record at ``record_path``, or None
    when there is no usable record, or the record or the file is not the one whose sha256 is ``scan_sha256``
    (``index``: the scan's record of the file, ``scan_digests.load``, when already read)."""
    try:
        record = artifacts.read_optional(record_path, LINES_SCHEMA)
    except ArtifactError as exc:
        logger.info("%s; scan.json's lines are read instead", exc)
        return None
    if record is None or record["scan_sha256"] != scan_sha256:
        return None
    # The scan's record of this very file (``scan_digests``) names its sha256: else the file is hashed.
    if index is None:
        index = scan_digests.load(path)
    try:
        with open(path, "rb") as handle:
            if index is None or index.sha256 != scan_sha256:
                digest = hashlib.sha256()
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                if digest.hexdigest() != scan_sha256:
                    return None
            handle.seek(0)
            first = handle.readline()
            handle.seek(len(first) + record["body_length"])
            last = handle.read()
        if not first.endswith(_FIRST_LINE_END) or not last.startswith(b"]"):
            return None
        head = orjson.loads(first.rstrip(b"\n") + last)
    except (OSError, ValueError):
        return None
    start = len(first)
    lines: dict[str, KeptLine] = {}
    for offset, length, workflow, where, source, sha256, reused, models, nodes in record["entries"]:
        base = (workflow, where, source, sha256)
        lines[sha256] = KeptLine(start + offset, length, base, reused, [(f, k) for f, k in models], nodes)
    return lines, head
