"""Each workflow's part of the report, kept between cycles so an unchanged workflow is not worked out again.

The report reads scan.json a line (one workflow) at a time (``ScanLines``). ``state/report_parts.pack`` keeps,
per workflow, the record ``status_report.workflow_record`` made of it, keyed by the digest of its scan.json
line, with the digest of what else the record was made from (``PartStore.depends``: the search's answers for
the files it misses, its drifted files, the settings); what it took from its readiness history is compared
apart (``status_report.history_holds``). A workflow whose line and dependencies are unchanged reuses its
record without its line being parsed. One line per workflow::

    <digest of the scan line> <digest of the dependencies> <digest of PAYLOAD> <PAYLOAD>

where PAYLOAD is the record's compact JSON. It is a cache, safe to lose: a torn or edited line (its checksum
no longer matches) is ignored and that workflow worked out again. It is rewritten (temp file and rename, not
fsynced: a crash costs one full report) after each report that made a new record or lost an old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, catalogue
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import scan_keys
from comfywatchman.reporting.answers import Answers, lookup
from comfywatchman.stages import scan_digests, scan_parts

logger = logging.getLogger(__name__)

FILE = "report_parts.pack"
_OPENER = b'"workflows":['


def digest(data: bytes) -> bytes:
    """Return the short hex digest the store keys and checks lines by (the first 32 hex digits of the sha256:
    hashlib's sha256 runs on the processor's SHA instructions, twice as fast as its blake2b here)."""
    return hashlib.sha256(data).hexdigest()[:32].encode("ascii")


_FILE_HASH = re.compile(rb'"sha256":"[0-9a-f]{64}","source":')


def line_digest(line: bytes) -> bytes:
    """Return the digest a scan.json line is kept under: its text without what says nothing to the report,
    the entry's ``reused`` flag (whether the scan parsed the file again; it flips from false to true in the
    cycle after a file is first scanned) and the file's own sha256 (a workflow edited without changing what
    it needs, a node's title, is the same to the report). They are the entry's last keys but two (compact
    JSON sorts keys and escapes quotes inside strings: ``scan_parts.report_cut`` finds them from the line's
    end), and the scan works the same digest out as it writes the line (``scan_parts.both_digests``). A line
    of another shape (hand-made) has its first flag set true and first such sha256 left out."""
    # Fed to the hash in pieces around what is left out: the same digest as of the text with the flag false and
    # the sha256 cut, without copying a line of several kilobytes twice.
    h = hashlib.sha256()  # ``digest``'s hash: 13 MB of lines at 2,000 workflows
    view = memoryview(line)
    cut = scan_parts.report_cut(line)
    if cut is not None:
        at, after = cut
        h.update(view[:at])
        h.update(scan_parts.REPORT_FILL)
        h.update(view[after + scan_parts.SOURCE_AFTER :])
        return h.hexdigest()[:32].encode("ascii")
    start = 0
    flag = line.find(b'"reused":true')
    if flag >= 0:
        h.update(view[:flag])
        h.update(b'"reused":false')
        start = flag + len(b'"reused":true')
    found = _FILE_HASH.search(line, start)
    if found is not None:
        h.update(view[start : found.start()])
        h.update(b'"source":')
        start = found.end()
    h.update(view[start:])
    return h.hexdigest()[:32].encode("ascii")


class ScanLines:
    """scan.json's head (validated) and its workflow entries as raw lines, parsed only when asked
    (``parse``): the report reuses the part of a workflow whose line it has seen before without parsing it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._assembled = artifacts.Assembled(path, "workflows", "scan", "workflow")
        self.head: dict[str, Any] = self._assembled.head
        with path.open("rb") as handle:
            self._one_per_line = handle.readline().rstrip(b"\n").endswith(_OPENER)
        # Where each workflow's line starts, once ``digests`` read them (one entry per line only).
        self.starts: list[int] | None = None
        # The scan's record of this scan.json, once ``digests`` or ``primed_digests`` found it.
        self.recorded: scan_digests.LineIndex | None = None

    def lines(self) -> Iterator[tuple[int, bytes, dict[str, Any] | None]]:
        """Yield ``(line number, line, entry or None)`` per workflow: the raw line when the file holds one
        entry per line (``entry`` None until ``parse``), else each entry re-encoded with the entry itself."""
        if not self._one_per_line:
            for number, item in enumerate(self._assembled.items(), start=2):
                yield number, orjson.dumps(item, option=orjson.OPT_SORT_KEYS), item
            return
        with self.path.open("rb") as handle:
            handle.readline()
            for number, line in enumerate(handle, start=2):
                if line.startswith(b"]"):
                    return
                yield number, line.rstrip(b"\n").removesuffix(b","), None
        raise ArtifactError(f"{self.path}: ends inside its list 'workflows' (a torn write?)")

    def digests(self) -> list[bytes]:
        """Return each workflow line's ``line_digest``, in order; where each line starts is kept for
        ``line_at`` when the file holds one entry per line."""
        if not self._one_per_line:
            return [line_digest(line) for _, line, _ in self.lines()]
        recorded = scan_digests.load(self.path)
        if recorded is not None:
            return self._recorded_digests(recorded)
        found: list[bytes] = []
        self.starts = []
        with self.path.open("rb") as handle:
            offset = len(handle.readline())
            for line in handle:
                if line.startswith(b"]"):
                    return found
                self.starts.append(offset)
                offset += len(line)
                found.append(line_digest(line.rstrip(b"\n").removesuffix(b",")))
        raise ArtifactError(f"{self.path}: ends inside its list 'workflows' (a torn write?)")

    def _recorded_digests(self, recorded: scan_digests.LineIndex) -> list[bytes]:
        """Return each workflow line's ``line_digest`` by the scan's digest of it (``recorded``, the scan's
        record of this very scan.json): from ``report_scan_keys.bin`` for a line seen before, hashed for the
        others (read alone); the keys of this scan.json are kept for the next report."""
        keys_path = self.path.with_name(scan_keys.FILE)
        known = scan_keys.load(keys_path)
        missing = [at for at, key in enumerate(recorded.digests) if key not in known]
        texts = recorded.lines(self.path, missing) if missing else {}
        found = [known.get(key) or line_digest(texts[at]) for at, key in enumerate(recorded.digests)]
        self.starts, self.recorded = recorded.offsets, recorded
        if missing or len(known) != len(found):
            scan_keys.save(keys_path, zip(recorded.digests, found, strict=True))
        return found

    def primed_digests(self) -> list[bytes] | None:
        """Return each workflow line's ``line_digest``, in order, without reading scan.json, when the scan's
        record describes it and ``report_scan_keys.bin`` holds every line's (a scan that made many entries
        wrote both: ``scan.primes_report``); else None (they are worked out as the lines are read)."""
        recorded = scan_digests.load(self.path) if self._one_per_line else None
        if recorded is None:
            return None
        keys_path = self.path.with_name(scan_keys.FILE)
        known = scan_keys.load(keys_path)
        found = [known.get(key, b"") for key in recorded.digests]
        if b"" in found:
            return None
        self.starts, self.recorded = recorded.offsets, recorded
        if len(known) != len(found):  # the keys of lines gone too: only this scan.json's are kept
            scan_keys.save(keys_path, zip(recorded.digests, found, strict=True))
        return found

    def keep_keys(self, found: Sequence[bytes]) -> None:
        """Keep each line's ``line_digest`` (``found``, worked out from the lines, in order) by the scan's digest
        of it, where the scan's record describes this scan.json, for the next report's ``digests``."""
        recorded = scan_digests.load(self.path) if self._one_per_line else None
        if recorded is not None and len(recorded.digests) == len(found):
            scan_keys.save(self.path.with_name(scan_keys.FILE), zip(recorded.digests, found, strict=True))

    def entry_at(self, position: int) -> dict[str, Any]:
        """Return the validated entry of the workflow at ``position`` (from 0), its line read alone where
        ``digests`` found it (``starts`` is not None)."""
        assert self.starts is not None
        with self.path.open("rb") as handle:
            handle.seek(self.starts[position])
            line = handle.readline()
        return self.parse(position + 2, line.rstrip(b"\n").removesuffix(b","))

    def parse(self, number: int, line: bytes) -> dict[str, Any]:
        """Return the validated workflow entry of scan.json's line ``number``; raise ArtifactError naming the
        file and line when it is not valid."""
        entry: dict[str, Any] = artifacts.item_line(line, number, self.path, "scan", "workflow")
        return entry


class Entries:
    """The workflow entries of a scan.json its scan's record describes (``ScanLines.recorded``), by position,
    each read only when asked for (``at``): what the scan took of it for the report (``status_report.
    scanned_part``, kept in ``report_scan_parts.pack`` by the digest of its line) when the pack has it, else
    its line read alone and parsed. The pack is read once, front to back, as far as the entries asked for
    need (the scan writes it in scan.json's order: each entry's part is then the next line), each line read
    noted, so an entry whose part came earlier is read back alone; one of another format is ignored, and a
    torn or edited line of it (its checksum no longer matches) is read from scan.json instead. A context
    manager: the files stay open while it is in use."""

    def __init__(self, scan: ScanLines, tag: str) -> None:
        assert scan.recorded is not None
        self.scan, self.recorded = scan, scan.recorded
        self.path = catalogue.in_state(scan.path.parent, "report_scan_parts")
        self.tag = tag.encode("ascii")
        self.primed = 0  # entries taken from the pack
        self._seen: dict[bytes, tuple[bytes, int, int]] = {}  # scan digest -> (check, offset, length), read so far
        self._pack: Any = None
        self._offset = 0  # where the pack's next line starts
        self._ended = False  # the pack is read to its end (or cannot be read)
        self._lines: Any = None

    def __enter__(self) -> Entries:
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in (self._pack, self._lines):
            if handle is not None:
                handle.close()

    def at(self, position: int) -> dict[str, Any]:
        """Return the entry (or what the report reads of it) of the workflow at ``position`` (from 0); raise
        ArtifactError naming scan.json and the line when its line must be read and is not valid."""
        primed = self._primed(self.recorded.digests[position])
        if primed is not None:
            self.primed += 1
            return primed
        if self._lines is None:
            self._lines = self.scan.path.open("rb")
        return self.scan.parse(position + 2, self.recorded.line(self._lines, position))

    def _primed(self, digest: bytes) -> dict[str, Any] | None:
        found = self._seen.get(digest)
        payload: bytes | None = None
        if found is None:
            found, payload = self._read_to(digest)
            if found is None:
                return None
        check, start, length = found
        try:
            if payload is None:  # a line read before: its payload read back alone
                payload = os.pread(self._pack.fileno(), length, start)
        except OSError:
            return None
        if scan_parts.payload_digest(payload) != check:
            logger.debug("%s: the line of %s is torn or edited; read from scan.json", self.path, digest)
            return None
        try:
            entry = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        return entry if isinstance(entry, dict) else None

    def _read_to(self, digest: bytes) -> tuple[tuple[bytes, int, int] | None, bytes | None]:
        """Read the pack's lines (``scan_parts.Primer``'s: ``<scan digest> <payload digest> <payload>``) on from
        where the last call left off, noting each, up to the line of ``digest``; return where its payload is
        and the payload itself, or (None, None) when the pack holds none."""
        if self._ended:
            return None, None
        try:
            if self._pack is None:
                self._pack = self.path.open("rb")
                first = self._pack.readline()
                if first.rstrip(b"\n") != self.tag:
                    self._ended = True
                    return None, None
                self._offset = len(first)
            for line in self._pack:
                offset = self._offset
                self._offset += len(line)
                # The two fields before the payload, without a copy of it (kilobytes a line).
                cut = line.find(b" ")
                end = line.find(b" ", cut + 1)
                if end > 0 and line.endswith(b"\n"):
                    place = (line[cut + 1 : end], offset + end + 1, len(line) - end - 2)
                    self._seen[line[:cut]] = place
                    if line[:cut] == digest:
                        return place, line[end + 1 : -1]
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("%s: unreadable (%s); scan.json's lines are read instead", self.path, exc)
            self._seen.clear()
        self._ended = True
        return None, None


class PartStore:
    """Workflow records by the digest of their scan.json line, for one settings digest.

    The last report's file is indexed (digests and where each payload lies), not held: a payload is read
    when its line is looked up. This report's lines are written to a temp file as they are kept, which
    ``save`` renames over the old file (or drops, when nothing changed)."""

    def __init__(self, path: Path, settings: Mapping[str, Any]) -> None:
        self.path = path
        self.settings = digest(orjson.dumps(dict(settings), option=orjson.OPT_SORT_KEYS))
        # line digest -> (dependencies digest, payload digest, payload offset, payload length)
        self._index: dict[bytes, tuple[bytes, bytes, int, int]] = {}
        self._old: Any = None
        self._new: Any = None
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self._last: tuple[bytes, bytes] | None = None
        self._kept = 0
        self._changed = False
        self.reused = 0
        self._load()

    def _load(self) -> None:
        try:
            self._old = self.path.open("rb")
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("%s: unreadable (%s); every workflow's report is worked out again", self.path, exc)
            return
        offset = 0
        for line in self._old:
            fields = line.split(b" ", 3)
            if len(fields) == 4 and line.endswith(b"\n"):
                start = offset + sum(len(f) for f in fields[:3]) + 3
                self._index[fields[0]] = (fields[1], fields[2], start, len(line) - 1 - (start - offset))
            offset += len(line)

    def depends(self, record: Mapping[str, Any], answers: Answers, drift_ids: Sequence[str]) -> bytes:
        """Return the digest of what ``record`` was made from besides its scan line and its readiness history
        (checked apart: ``status_report.history_holds``): the settings, the answers for the files it misses,
        and its drifted files."""
        h = hashlib.blake2b(self.settings, digest_size=16)
        missing = record["entry"]["missing_models"]
        if missing:  # ``keys_of``, their digests fed at once (the hash of the pieces one after the other)
            h.update(answers.digests([(m["folder"], lookup(m["name"])) for m in missing]))
        h.update(orjson.dumps(list(drift_ids)))
        return h.hexdigest().encode("ascii")

    def get(self, line_digest: bytes) -> dict[str, Any] | None:
        """Return the record kept for a scan line with digest ``line_digest`` (None when none is usable); the
        caller checks its dependencies with ``depends`` and ``matches``."""
        found = self._index.get(line_digest)
        if found is None:
            return None
        _, check, start, length = found
        try:
            self._old.seek(start)
            payload = self._old.read(length)
        except OSError:
            return None
        if digest(payload) != check:
            logger.debug("%s: the line of %s is torn or edited; worked out again", self.path, line_digest)
            return None
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        self._last = (line_digest, payload)
        return record if isinstance(record, dict) else None

    def matches(self, line_digest: bytes, deps: bytes) -> bool:
        """Return True when the record kept for ``line_digest`` was made from the dependencies ``deps``."""
        found = self._index.get(line_digest)
        return found is not None and found[0] == deps

    def keep(self, line_digest: bytes, deps: bytes, record: Mapping[str, Any] | None = None) -> None:
        """Keep the record of this cycle's scan line ``line_digest``: ``record`` when it was made now, None
        when the one just read (``get``) is reused as it is."""
        if record is None:
            assert self._last is not None and self._last[0] == line_digest
            payload, check = self._last[1], self._index[line_digest][1]
            self.reused += 1
        else:
            payload = orjson.dumps(record)
            check = digest(payload)
            self._changed = True
        self._kept += 1
        try:
            if self._new is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._new = open(self._tmp, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by save)
            # In pieces, not joined: no copy of a payload of kilobytes per workflow.
            self._new.write(b" ".join((line_digest, deps, check, b"")))
            self._new.write(payload)
            self._new.write(b"\n")
        except OSError as exc:
            logger.warning("%s: not written (%s); the next report works every workflow out again", self._tmp, exc)

    def discard(self) -> None:
        """Leave the last report's records as they are and drop this report's (it failed)."""
        for handle in (self._old, self._new):
            if handle is not None:
                handle.close()
        self._old = self._new = None
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)

    def save(self) -> None:
        """Put this report's records in place of the last one's, unless they are the same (none made now and
        none gone). A failure to write is logged and otherwise ignored (the next report works everything out
        again)."""
        if self._old is not None:
            self._old.close()
        if self._new is None:
            return
        self._new.close()
        try:
            if self._changed or self._kept != len(self._index):
                os.replace(self._tmp, self.path)
            else:
                os.unlink(self._tmp)
        except OSError as exc:
            logger.warning("%s: not written (%s); the next report works every workflow out again", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
