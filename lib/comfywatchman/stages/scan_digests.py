"""The digest of each workflow line of ``scan.json``, written by the scan beside it: ``state/scan_digests.bin``.

The search and verify find the workflows that changed by the digest of each scan.json line
(``scan_parts.line_digest``): hashing all 13 MB of scan.json (at 2,000 workflows) costs each of them some 15 ms,
a large share of a cycle where one workflow changed. The scan knows those digests for less: a line it copies from the
last scan.json keeps the digest the last record gave it (the digest leaves out the ``reused`` flag, the one
part of a copied line that may change), and only the lines it makes are hashed. So it writes, after scan.json::

    scan-digests-1
    <sha256 of the next line>
    {"scan": [size, mtime_ns, ctime_ns, inode] of scan.json, "sha256": its sha256,
     "digests": [...], "offsets": [...], "lengths": [...]}

one digest, offset (from the start of the file) and length (without the comma and newline) per workflow line,
in order. A stage trusts it only for the very file it describes (``load``: the stat of scan.json now is the one
recorded; a scan.json written again, edited by hand, or copied elsewhere is another file) and hashes scan.json as
before otherwise. The scan, too, takes the last scan.json's sha256 from it instead of hashing the file again.
The file is a cache, safe to lose: a torn, edited or foreign record is ignored (a warning for one that cannot be
read as a record), never trusted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from comfywatchman import file_identity

# scan_parts imports this module: its names are taken at call time.
from comfywatchman.stages import cache_files, scan_parts

logger = logging.getLogger(__name__)

FILE = "scan_digests.bin"
#: Bump when what the file holds changes meaning (or ``scan_parts.line_digest`` does).
TAG = b"scan-digests-1"


def file_key(path: Path) -> list[int] | None:
    """Return what stands for the bytes of the file at ``path``: its size, mtime and ctime (ns) and inode
    (a file written again through a rename is a new inode; an edit moves its mtime and ctime), or None when it
    cannot be stat'ed (``file_identity``, without the device: the key the file records)."""
    key = file_identity.of(path)
    return None if key is None else key[:4]


class LineIndex:
    """The workflow lines of one scan.json: each one's digest (``line_digest``), offset and length, in order,
    and the sha256 of the whole file."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("digests", "lengths", "offsets", "sha256")

    digests: list[bytes]
    offsets: list[int]
    lengths: list[int]
    sha256: str

    def __init__(self, digests: list[bytes], offsets: list[int], lengths: list[int], sha256: str) -> None:
        self.digests, self.offsets, self.lengths, self.sha256 = digests, offsets, lengths, sha256

    def line(self, handle: IO[bytes], index: int) -> bytes:
        """Return the text of the line at ``index`` (without its comma and newline), read from ``handle`` (the
        scan.json the index describes, open for reading)."""
        handle.seek(self.offsets[index])
        return handle.read(self.lengths[index])

    def lines(self, scan_path: Path, wanted: Iterable[int]) -> dict[int, bytes]:
        """Return the text of the lines at the indexes ``wanted``, read from scan.json at ``scan_path``."""
        with scan_path.open("rb") as handle:
            return {index: self.line(handle, index) for index in sorted(wanted)}


def record_path(scan_path: Path) -> Path:
    """Return where the record of the scan.json at ``scan_path`` is."""
    return scan_path.with_name(FILE)


def load(scan_path: Path) -> LineIndex | None:
    """Return the line index of the scan.json at ``scan_path`` from its record, or None when there is none
    that is whole and describes that very file (then the caller hashes scan.json's lines itself)."""
    path = record_path(scan_path)
    try:
        body = cache_files.read_checked(path, TAG)
        if body is None:
            return None
        document = orjson.loads(body)
        index = _index_of(document)
    except OSError as exc:
        logger.warning("%s: unreadable (%s); scan.json's lines are hashed instead", path, exc)
        return None
    except cache_files.OtherFormat:
        logger.info("%s: of another format; scan.json's lines are hashed instead", path)
        return None
    except (ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
        logger.warning("%s: not a record of scan.json's lines (%s); they are hashed instead", path, exc)
        return None
    if document["scan"] != file_key(scan_path):
        logger.debug("%s: describes another scan.json than the one on disk; its lines are hashed", path)
        return None
    return index


def _index_of(document: Mapping[str, Any]) -> LineIndex:
    """Return the index a record's document holds; raise ValueError (or TypeError, KeyError) when it is not
    one."""
    digests, offsets, lengths = document["digests"], document["offsets"], document["lengths"]
    sha256 = document["sha256"]
    if not isinstance(sha256, str):
        raise TypeError("its sha256 is not text")
    if not (isinstance(digests, list) and isinstance(offsets, list) and isinstance(lengths, list)):
        raise TypeError("its lists are not lists")
    if not len(digests) == len(offsets) == len(lengths):
        raise ValueError("its lists differ in length")
    # Checked a list at a time (thousands of items): digests are texts of 32 characters, the rest counts.
    if digests and (set(map(type, digests)) != {str} or set(map(len, digests)) != {32}):
        raise ValueError("a digest is not one")
    if offsets and (set(map(type, offsets)) | set(map(type, lengths)) != {int} or min(offsets + lengths) < 0):
        raise ValueError("an offset or length is not a count")
    return LineIndex([d.encode("ascii") for d in digests], offsets, lengths, sha256)


class Recorder:
    """Gathers the digest of each line the scan writes to scan.json, in order (``add``), and writes the record
    once scan.json is in place (``save``). The last record, read before scan.json is written again, gives the
    digests of the lines copied from the last scan.json, by their offset there."""

    def __init__(self, scan_path: Path) -> None:
        self.scan_path = scan_path
        last = self.last = load(scan_path)  # the record of the last scan.json, if it is one of that very file
        self._last = dict(zip(last.offsets, last.digests, strict=True)) if last is not None else {}
        self.digests: list[str] = []
        self.offsets: list[int] = []  # from the end of scan.json's first line until ``save``
        self.lengths: list[int] = []
        self._at = 0
        self._pending: list[tuple[int, int, int]] = []  # lines copied whose digest is not known yet
        #: The report's digest of each line (``reporting.parts.line_digest``; None: not known), in order, when
        #: ``keep_report_keys`` asked for them; with the last report's digests by the scan's digest of a line.
        self.report: list[bytes | None] | None = None
        self._report_last: dict[bytes, bytes] = {}

    def keep_report_keys(self, last: dict[bytes, bytes]) -> None:
        """Work out the report's digest of each line from now on too (``report_pairs``): of a line hashed here
        from the same hash (``scan_parts.both_digests``), of one whose digest the last record gave from
        ``last`` (the report's digest by the scan's of each line of the last scan.json, ``report_scan_keys``)."""
        self.report = []
        self._report_last = last

    def report_pairs(self) -> list[tuple[bytes, bytes]]:
        """Return the scan's and the report's digest of each line whose report digest is known, in order."""
        if self.report is None:
            return []
        pairs = zip(self.digests, self.report, strict=True)
        return [(digest.encode("ascii"), mine) for digest, mine in pairs if mine is not None]

    def _hashed(self, data: bytes, start: int = 0, end: int | None = None) -> bytes:
        """Return the digest of a line hashed here (and note the report's, when asked for)."""
        if self.report is None:
            return scan_parts.line_digest(data, start, end)
        digest, mine = scan_parts.both_digests(data, start, end)
        self.report.append(mine)
        return digest

    def _known(self, digest: bytes) -> bytes:
        """Return ``digest``, given by the last record (and note the report's digest of its line, when asked)."""
        if self.report is not None:
            self.report.append(self._report_last.get(digest))
        return digest

    def add(self, text: bytes, copied_from: int | None = None) -> None:
        """Note the next line written: its ``text``; ``copied_from``: the offset in the last scan.json of the
        line it was copied from, when at most its ``reused`` flag differs (so its digest is the same)."""
        digest = self._last.get(copied_from) if copied_from is not None else None
        digest = self._known(digest) if digest is not None else self._hashed(text)
        self.digests.append(digest.decode("ascii"))
        self.offsets.append(self._at)
        self.lengths.append(len(text))
        self._at += len(text) + 2  # the text, then ",\n" (the last one's "\n" alone)

    def add_copied(self, at: int, length: int, copied_from: int) -> None:
        """Note the next line written, copied from the line at offset ``copied_from`` in the last scan.json
        with at most its ``reused`` flag changed (as ``add``); it is ``length`` bytes at ``at`` in the text
        that ``flush_copied`` is given next, which hashes it only when the last record has no digest for it."""
        digest = self._last.get(copied_from)
        if digest is None:
            self._pending.append((len(self.digests), at, length))
            if self.report is not None:
                self.report.append(None)  # hashed by ``flush_copied``
        self.digests.append(self._known(digest).decode("ascii") if digest is not None else "")
        self.offsets.append(self._at)
        self.lengths.append(length)
        self._at += length + 2

    def flush_copied(self, text: bytes) -> None:
        """Hash the lines noted by ``add_copied`` since the last call whose digest was not known: they are in
        ``text``, the run of lines they were copied in."""
        for index, at, length in self._pending:
            if self.report is None:
                self.digests[index] = scan_parts.line_digest(text, at, at + length).decode("ascii")
                continue
            digest, self.report[index] = scan_parts.both_digests(text, at, at + length)
            self.digests[index] = digest.decode("ascii")
        self._pending.clear()

    def save(self, sha256: str) -> None:
        """Write the record of the scan.json just written, whose sha256 is ``sha256`` (atomically; a failure
        costs the next stages a hash of scan.json, with a warning)."""
        path = record_path(self.scan_path)
        try:
            with self.scan_path.open("rb") as handle:
                start = len(handle.readline())
            document = {
                "scan": file_key(self.scan_path),
                "sha256": sha256,
                "digests": self.digests,
                "offsets": [start + offset for offset in self.offsets],
                "lengths": self.lengths,
            }
            body = orjson.dumps(document)
            cache_files.write_checked(path, TAG, body)
        except OSError as exc:
            logger.warning("%s: cannot be written (%s); the next stages hash scan.json's lines", path, exc)
