"""What a stage takes from each workflow of ``scan.json``, kept between cycles by the bytes of its line.

``scan.json`` holds one workflow entry per line (``artifacts.write_assembled``), and a line whose bytes did not
change says the same as last cycle. A stage that needs only a small part of each entry (the search: the
missing files; verify: the files a hash is expected for and the missing ones) keeps that part in
``state/<name>.pack``, one line per scan.json line::

    <sha256 of the scan.json line> <sha256 of PAYLOAD> <PAYLOAD>

where PAYLOAD is the compact JSON of the part. The line's digest leaves out the workflow's ``reused`` flag
(whether the scan parsed it this time), so a part must not depend on it. The next cycle parses (and
validates) only the lines it has no part for: when one workflow changed, one line. The file is a cache, safe
to lose: a torn or edited line (its checksum no longer matches) is ignored and its workflow read from
scan.json again; a pack made by another format (its first line) is ignored whole. The pack's lines are
found by their scan line's digest, in any order: the parts of new lines are appended to it (a cycle where one
workflow changed writes one line), and it is rewritten, through a temp file and a rename, when it holds more
lines no workflow has any more than ``STALE_SHARE`` of its lines (or is missing, or of another format).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

# scan_digests imports this module: its names are taken at call time.
from comfywatchman.stages import cache_files, scan_digests

logger = logging.getLogger(__name__)

_KEY = b'"workflows":['


_REUSED = b',"reused":'

# The buffer of a pack's temp file while the scan fills it (``Primer``): megabytes go there in lines of kilobytes.
_WRITE_BUFFER = 1 << 16

#: A pack whose lines of workflows gone or changed exceed this share of the lines in use is rewritten whole.
STALE_SHARE = 0.25


def line_digest(data: bytes, start: int = 0, end: int | None = None) -> bytes:
    """Return the digest of the scan.json workflow line ``data[start:end]`` (its comma and newline, if any, left
    out) without its ``reused`` flag, which says only whether the scan parsed the workflow this time (every
    line turns ``true`` in the cycle after the first): the entry's own key, the last ``,"reused":`` of the line
    (the keys after it, sha256, source and workflow, are strings, in which a quote is escaped). The line is
    hashed where it lies, not copied: a stage may hash a whole chunk of scan.json line by line."""
    end = len(data) if end is None else end
    end -= data.endswith(b"\n", start, end)
    end -= data.endswith(b",", start, end)
    view = memoryview(data)
    at = data.rfind(_REUSED, start, end)
    if at < 0:
        return _digest(view[start:end])
    after = at + len(_REUSED) + (4 if data.startswith(b"true", at + len(_REUSED)) else 5)
    digest = hashlib.sha256(view[start:at])
    digest.update(view[after:end])
    return digest.hexdigest()[:32].encode("ascii")


# The end of an entry's line as the scan writes it (compact, keys sorted): its ``reused`` flag, then the file's sha256.
_TAIL = re.compile(rb'"sha256":"[0-9a-f]{64}","source":')
#: What the report's digest hashes in place of ``,"reused":X,"sha256":"...","source":`` (``report_cut``), and
#: how far past the flag's value (``report_cut``'s second place) the text it hashes goes on.
REPORT_FILL = b',"reused":false,"source":'
SOURCE_AFTER = len(b',"sha256":"","source":') + 64  # from the comma after the flag's value to the source's value


def report_cut(data: bytes, start: int = 0, end: int | None = None) -> tuple[int, int] | None:
    """Return where the entry's own ``,"reused":`` starts in the line ``data[start:end]`` and where its value
    ends (the comma before the file's ``"sha256"``), when the line ends as the scan writes an entry:
    ``...,"reused":true|false,"sha256":"<64 hex>","source":...``; else None.
    The entry's own flag is the line's last (the keys after it, sha256, source and workflow, are strings, in
    which a quote is escaped). Only the line's end is looked at."""
    end = len(data) if end is None else end
    at = data.rfind(_REUSED, start, end)
    if at < 0:
        return None
    value = at + len(_REUSED)
    if data.startswith(b"true,", value, end):
        after = value + 4
    elif data.startswith(b"false,", value, end):
        after = value + 5
    else:
        return None
    if _TAIL.match(data, after + 1, end) is None:
        return None
    return at, after


def both_digests(data: bytes, start: int = 0, end: int | None = None) -> tuple[bytes, bytes]:
    """Return ``line_digest`` of the scan.json workflow line ``data[start:end]`` and the report's digest of it
    (``reporting.parts.line_digest``), hashing the text they share (all of it up to the entry's flag) once."""
    end = len(data) if end is None else end
    cut = report_cut(data, start, end) if not data.endswith((b",", b"\n"), start, end) else None
    if cut is None:  # not an entry as the scan writes it: each digest as its function makes it
        from comfywatchman.reporting import parts  # imports this module: taken at call time

        return line_digest(data, start, end), parts.line_digest(bytes(data[start:end]))
    at, after = cut
    view = memoryview(data)
    scan = hashlib.sha256(view[start:at])
    report = scan.copy()
    scan.update(view[after:end])
    report.update(REPORT_FILL)
    report.update(view[after + SOURCE_AFTER : end])
    return scan.hexdigest()[:32].encode("ascii"), report.hexdigest()[:32].encode("ascii")


def _digest(data: bytes | memoryview) -> bytes:
    # sha256, cut to 128 bits: the fastest of hashlib's on this (hardware sha), and no accidental collision.
    return hashlib.sha256(data).hexdigest()[:32].encode("ascii")


def payload_digest(payload: bytes) -> bytes:
    """Return the checksum a pack line gives its payload (a line whose payload no longer has it is torn)."""
    return _digest(payload)


class ScanParts:
    """The parts one stage takes from scan.json's workflows (``take``), kept in ``path`` under ``tag`` (what
    ``take`` is: bump it when it changes)."""

    def __init__(self, path: Path, tag: str, take: Callable[[dict[str, Any]], Any]) -> None:
        self.path, self.tag, self.take = path, tag.encode("ascii"), take
        self.parsed = 0  # scan.json lines parsed this time (the others came from the pack)
        self.loaded = False  # whether the pack was read (it exists and is of this format)
        #: The digest of each workflow line of scan.json, in order, once a one-line-per-workflow file is read.
        self.digests: list[bytes] = []
        #: The parts of the lines parsed this time, by digest (``scan``).
        self.fresh: dict[bytes, Any] = {}
        self._kept: dict[bytes, list[bytes]] = {}

    def _load(self) -> dict[bytes, list[bytes]]:
        """Return scan line digest -> ``[payload digest, payload]`` of the pack's lines (empty when it is missing
        or of another tag); a payload is checked against its digest when it is used."""
        kept: dict[bytes, list[bytes]] = {}
        try:
            # Line by line: the pack is megabytes, and only its parts are kept (no copy of the whole file).
            with self.path.open("rb") as handle:
                if handle.readline().rstrip(b"\n") != self.tag:
                    return {}
                self.loaded = True
                for line in handle:
                    parts = line.rstrip(b"\n").split(b" ", 2)
                    if len(parts) == 3:
                        kept[parts[0]] = parts[1:]
        except FileNotFoundError:
            return {}
        except OSError as exc:
            logger.warning("%s: unreadable (%s); scan.json is read in full", self.path, exc)
            return {}
        return kept

    def read(self, scan_path: Path) -> Iterator[Any]:
        """Yield ``take`` of each workflow of scan.json at ``scan_path``, in order: a line seen before (the
        same bytes) from the pack, any other parsed and validated (``artifacts.Assembled`` for the head and
        for a file in another layout, which is read whole, without the pack). The pack is rewritten at the
        end when what it holds changed. Raise ArtifactError naming the file (and line) when it is broken."""
        reader = artifacts.Assembled(scan_path, "workflows", "scan", "workflow")
        try:
            with scan_path.open("rb") as handle:
                first = handle.readline()
                one_per_line = first.rstrip(b"\n").endswith(_KEY)
                if one_per_line:
                    yield from self._lines(handle, scan_path)
                    return
        except OSError as exc:
            raise ArtifactError(f"{scan_path}: unreadable: {exc.strerror or exc}") from None
        for workflow in reader.items():
            self.parsed += 1
            yield self.take(workflow)

    def scan(self, scan_path: Path) -> list[bytes] | None:
        """Return the digest of each workflow line of scan.json at ``scan_path``, in order, parsing only the
        lines the pack has no part for (their parts are in ``fresh``; any other is had by ``get``), the pack
        kept as ``read`` keeps it; None when scan.json is in another layout (then ``read`` reads it whole).
        Raise ArtifactError naming the file (and line) when it is broken."""
        try:
            with scan_path.open("rb") as handle:
                if not handle.readline().rstrip(b"\n").endswith(_KEY):
                    return None
                for _ in self._walk(handle, scan_path, load=False):
                    pass
        except OSError as exc:
            raise ArtifactError(f"{scan_path}: unreadable: {exc.strerror or exc}") from None
        return self.digests

    def get(self, digest: bytes) -> Any:
        """Return the part of the scan.json line of ``digest`` read by ``scan`` (None when the pack's line is
        torn or edited, or there is none)."""
        if digest in self.fresh:
            return self.fresh[digest]
        found = self._kept.get(digest)
        return _part(found) if found is not None else None

    def _lines(self, handle: Any, scan_path: Path) -> Iterator[Any]:
        for _, part in self._walk(handle, scan_path, load=True):
            yield part

    def _walk(self, handle: Any, scan_path: Path, load: bool) -> Iterator[tuple[bytes, Any]]:
        """Yield the digest and part of each workflow line (``load``: the part of a line the pack holds is read
        and checked, else it is None and only the lines the pack lacks are parsed); keep the pack. The digests
        come from the scan's record (``scan_digests``) when it describes this very file: then only the lines
        the pack lacks are read."""
        kept = self._kept = self._load()
        self.digests = []
        # Each line's digest and its part's, which are joined only for a pack written again: the payloads stay
        # the ones ``kept`` holds (a pack of 26 MB at 8,000 workflows is not held twice).
        written: list[tuple[bytes, ...]] = []
        added: list[int] = []  # where the lines of parts made this time are in ``written``
        for number, digest, body in _lines(handle, scan_path):
            self.digests.append(digest)
            found = kept.get(digest)
            part = _part(found) if found is not None and load else None
            if found is None or (load and part is None):
                part = self._parse(body(), number, scan_path)
                if not load:  # ``scan``: kept for ``get`` (``read`` hands each part on and keeps none)
                    self.fresh[digest] = part
                payload = orjson.dumps(part)
                found = [_digest(payload), payload]
                added.append(len(written))
            written.append((digest, *found))
            yield digest, part
        in_use = len(written)
        stale = len(kept) + len(added) - in_use  # lines of the pack no workflow of this scan.json has
        if not self.loaded or stale > STALE_SHARE * in_use:
            self._save([self.tag, *(b" ".join(line) for line in written)])
        elif added:
            self._append([b" ".join(written[i]) for i in added])

    def _parse(self, body: bytes, number: int, scan_path: Path) -> Any:
        self.parsed += 1
        return self.take(artifacts.item_line(body, number, scan_path, "scan", "workflow"))

    def _append(self, lines: list[bytes]) -> None:
        """Add ``lines`` at the end of the pack. A torn append (a line cut short) fails its checksum next time
        and its workflow is parsed again; a line after a cut one starts on a line of its own."""
        try:
            with self.path.open("r+b") as handle:
                end = handle.seek(0, os.SEEK_END)
                handle.seek(end - 1)
                start = b"" if handle.read(1) == b"\n" else b"\n"
                handle.write(start + b"\n".join(lines) + b"\n")
        except OSError as exc:
            logger.warning("%s: cannot be written (%s); the next cycle reads scan.json in full", self.path, exc)

    def _save(self, lines: list[bytes]) -> None:
        try:
            cache_files.write_cache(self.path, b"\n".join(lines), b"\n")
        except OSError as exc:
            logger.warning("%s: cannot be written (%s); the next cycle reads scan.json in full", self.path, exc)


def _lines(handle: Any, scan_path: Path) -> Iterator[tuple[int, bytes, Callable[[], bytes]]]:
    """Yield the line number, digest and text (a function that reads it) of each workflow line of scan.json,
    ``handle`` open on it just past its first line: from the scan's record when it describes this very file
    (the text read only when asked for), else by reading and hashing every line. Raise ArtifactError when the
    file ends inside its list."""
    index = scan_digests.load(scan_path)
    if index is not None:
        for at, digest in enumerate(index.digests):
            yield at + 2, digest, functools.partial(index.line, handle, at)
        return
    for number, line in enumerate(handle, start=2):
        if line.startswith(b"]"):
            return
        body = line.rstrip(b"\n").removesuffix(b",")
        yield number, line_digest(body), functools.partial(bytes, body)
    raise ArtifactError(f"{scan_path}: ends inside its list 'workflows' (a torn write?)")


def _part(found: list[bytes]) -> Any:
    """Return the part a pack line holds (``[payload digest, payload]``), or None when it is torn or edited."""
    payload_digest, payload = found
    if _digest(payload) != payload_digest:
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


#: One pack the scan fills (``Primer``): where it lives, its tag and what its stage takes from an entry.
Pack = tuple[Path, str, Callable[[Any], Any]]


class Primer:
    """Fills the parts packs of the stages that read scan.json next with the parts of the lines the scan makes,
    as it writes them, so that those stages find every line's part kept and parse none.

    The scan has each entry it makes in hand, as the dict it encodes: taking a stage's part of it (``payloads``,
    right where the entry is made, so the dict is freed as soon as before) costs a fraction of what the stage
    pays to read the line back (parse, validate, take), and it is paid while the scan's workers keep the other
    cores busy, where the stages after the scan run on one core. A pack is a cache keyed by the digest of each
    line, so a part put there by the scan is the one the stage would make of the same line; a line the scan
    copied from the last scan.json is not primed (its part is kept already, or the stage makes it). The parts
    are written to a temp file beside each pack as they come (``add``), and go into the pack at ``finish``:
    the temp file becomes the pack when there is none of this format, else its lines are appended (a pack in
    ``whole`` is replaced: it holds the parts of the last scan that filled it alone). Nothing here can fail
    the scan: a part that cannot be taken, or a pack that cannot be written, is left to its stage.
    """

    def __init__(self, packs: list[Pack], whole: Collection[Path] = ()) -> None:
        self.packs = packs
        self.whole = frozenset(whole)
        self.takes = tuple(take for _path, _tag, take in packs)
        self._files: list[tuple[Any, str]] | None = None  # per pack, the open temp file and its path

    def add(self, digest: bytes, parts: tuple[bytes | None, ...]) -> None:
        """Add the parts (``payloads``) of the entry whose scan.json line has ``digest``, one per pack (None:
        none for that pack)."""
        files = self._files if self._files is not None else self._open()
        for at, ((handle, tmp), payload) in enumerate(zip(files, parts, strict=True)):
            if handle is None or payload is None:
                continue
            try:
                # In pieces, not joined: no copy of a payload of kilobytes per line.
                handle.write(digest)
                handle.write(b" " + _digest(payload) + b" ")
                handle.write(payload)
                handle.write(b"\n")
            except OSError as exc:  # a full disk: this pack is left to its stage, the scan goes on
                logger.warning("%s: cannot be written (%s); its stage reads scan.json itself", self.packs[at][0], exc)
                with contextlib.suppress(OSError):
                    handle.close()
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                files[at] = (None, "")

    def _open(self) -> list[tuple[Any, str]]:
        files: list[tuple[Any, str]] = []
        for path, tag, _take in self.packs:
            try:
                fd, tmp = artifacts.temp_beside(path)
                handle = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)
                handle.write(tag.encode("ascii") + b"\n")
            except OSError as exc:
                logger.warning("%s: cannot be written (%s); its stage reads scan.json itself", path, exc)
                files.append((None, ""))
                continue
            files.append((handle, tmp))
        self._files = files
        return files

    def finish(self) -> None:
        """Put the parts added into the packs (once scan.json is in place: a part is of a line written)."""
        if self._files is None:
            return  # nothing added
        for (handle, tmp), (path, tag, _take) in zip(self._files, self.packs, strict=True):
            if handle is None:
                continue
            try:
                handle.close()
                if path in self.whole:
                    os.replace(tmp, path)
                else:
                    _place(Path(tmp), path, tag.encode("ascii"))
            except OSError as exc:
                logger.warning("%s: cannot be written (%s); its stage reads scan.json itself", path, exc)
        self.close()

    def close(self) -> None:
        """Remove the temp files left (all of them when ``finish`` was not reached)."""
        for handle, tmp in self._files or ():
            if handle is not None:
                handle.close()
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        self._files = []


def payloads(takes: tuple[Callable[[Any], Any], ...], entry: Any) -> tuple[bytes | None, ...]:
    """Return the payload of each of ``takes`` of the scan.json ``entry`` (a dict, as the scan made it), None
    for one that cannot take it (its stage reads that line itself)."""
    found: list[bytes | None] = []
    for take in takes:
        try:
            found.append(orjson.dumps(take(entry)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            logger.debug("no part primed for a scan.json line: %s", exc)
            found.append(None)
    return tuple(found)


def _place(tmp: Path, path: Path, tag: bytes) -> None:
    """Make the temp file ``tmp`` (the line ``tag``, then parts) the pack at ``path`` when there is none of that
    tag, else append its parts to the pack (as ``ScanParts`` appends: a torn append costs a parse, never a
    wrong part)."""
    try:
        with path.open("r+b") as pack:
            if pack.readline().rstrip(b"\n") == tag:
                with tmp.open("rb") as parts:
                    parts.readline()
                    body = parts.read()
                end = pack.seek(0, os.SEEK_END)
                pack.seek(end - 1)
                start = b"" if pack.read(1) == b"\n" else b"\n"
                pack.write(start + body)
                return
    except FileNotFoundError:
        pass
    os.replace(tmp, path)
