"""A content-addressed store of what each workflow needs, so an unchanged workflow is never parsed twice.

``state/requirements.pack`` holds one line per workflow content hash::

    <sha256 of the workflow file> <settings hash> <sha256 of PAYLOAD> <PAYLOAD>

where PAYLOAD is the compact JSON of the requirements (format, container, models with their origins and
declarations, nodes with their ids and modes) the extractor made under that settings hash. It is a cache,
safe to lose: a line that is torn, edited (its checksum no longer matches) or made under other settings is
ignored and that workflow parsed again. New lines are appended; when stale lines (superseded, other settings,
workflows no longer listed) outnumber a quarter of the live ones, the file is rewritten through a temp file
and a rename. Neither is fsynced: what a crash loses costs a parse.

The file runs to tens of megabytes on a large install, so it is never held in memory: ``load`` keeps where
each line is, ``get`` reads the one line asked for, and lines added are written to a temp file beside it at
once and copied (or renamed) into place by ``save``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import IO, Any

import orjson

from comfywatchman import artifacts
from comfywatchman.workflow.payload import encode as encode_payload

logger = logging.getLogger(__name__)

FILE = "requirements.pack"
# Rewrite the file when it holds more than this share of stale lines (and at least MIN_STALE of them).
STALE_SHARE = 0.25
MIN_STALE = 64
# Where a line is: in the store's file, or among the lines added since it was loaded (the temp file).
_IN_FILE = 0
_ADDED = 1
_COPY_CHUNK = 1 << 20
_SPACE = ord(" ")


def _digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).hexdigest().encode("ascii")


class RequirementStore:
    """Requirements by workflow content hash, in one file, for one settings hash."""

    def __init__(self, path: Path, settings_hash: str) -> None:
        self.path = path
        self.settings_hash = settings_hash
        self._settings = settings_hash.encode("ascii")
        # content hash -> (_IN_FILE or _ADDED, offset, length without the newline) of its latest line
        self._index: dict[str, tuple[int, int, int]] = {}
        self._line_count = 0
        self._added: dict[str, None] = {}  # content hashes added since load, in order
        self._added_lines = 0
        self._loaded = False
        self._torn_tail = False
        self._file: IO[bytes] | None = None  # the store's file, open for reading lines
        self._temp: IO[bytes] | None = None  # the lines added, as they will be written
        self._temp_path: str | None = None
        self._temp_size = 0
        self._temp_moved = False  # a line was read back from the temp file since the last add

    def load(self) -> None:
        """Note where each line of the file is (its payload is read only when asked for); a missing or
        unreadable file is an empty store."""
        self._loaded = True
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (closed by the with below)
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("%s: unreadable (%s); every workflow is parsed again", self.path, exc)
            return
        with handle:
            try:
                self._index_lines(handle)
            except OSError as exc:
                logger.warning("%s: unreadable (%s); workflows past that point are parsed again", self.path, exc)

    def _index_lines(self, handle: IO[bytes]) -> None:
        """Note each line of ``handle`` (counted) and where each line made under this settings hash is.

        Read in large chunks, each line found and checked in place: the payloads (tens of megabytes on a large
        install) are never copied line by line, as a scan of a few changed workflows reads the whole index.
        """
        settings = self._settings
        after = 65 + len(settings)  # where the settings hash ends
        index = self._index
        buffer = bytearray()
        base = 0  # the file offset of buffer[0]
        while chunk := handle.read(_COPY_CHUNK):
            buffer += chunk
            start = 0
            while (end := buffer.find(b"\n", start)) >= 0:
                if end > start:
                    self._line_count += 1
                    if (
                        start + after < end  # the checks below stay inside the line
                        and buffer[start + 64] == _SPACE
                        and buffer.startswith(settings, start + 65)
                        and buffer[start + after] == _SPACE
                    ):
                        index[buffer[start : start + 64].decode("ascii", "replace")] = (
                            _IN_FILE,
                            base + start,
                            end - start,
                        )
                start = end + 1
            base += start
            del buffer[:start]
        if buffer:  # a last line without its newline: a write that was cut short
            self._torn_tail = True
            self._line_count += 1
            if buffer[64:65] == b" " and buffer.startswith(settings, 65) and buffer[after : after + 1] == b" ":
                index[buffer[:64].decode("ascii", "replace")] = (_IN_FILE, base, len(buffer))

    def get(self, sha256: str) -> dict[str, Any] | None:
        """Return the requirements kept for content ``sha256``, or None when there are none usable."""
        if not self._loaded:
            self.load()
        found = self._index.get(sha256)
        if found is None:
            return None
        try:
            line = self._read(found)
        except OSError as exc:
            logger.debug("%s: cannot read the line of %s (%s); parsed again", self.path, sha256, exc)
            return None
        parts = line.split(b" ", 3)
        if len(parts) != 4 or _digest(parts[3]) != parts[2]:
            logger.debug("%s: the line of %s is torn or edited; parsed again", self.path, sha256)
            return None
        try:
            data = orjson.loads(parts[3])
        except orjson.JSONDecodeError:
            try:
                data = json.loads(parts[3])
            except ValueError:
                return None
        return data if isinstance(data, dict) else None

    def has(self, sha256: str) -> bool:
        """Return whether the store has a line for content ``sha256`` (``get`` may still find it unusable)."""
        if not self._loaded:
            self.load()
        return sha256 in self._index

    def _read(self, where: tuple[int, int, int]) -> bytes:
        """Return the line at ``where`` (without its newline)."""
        source, offset, length = where
        if source == _ADDED:
            assert self._temp is not None
            handle = self._temp
            self._temp_moved = True  # the next add goes back to the end first
        else:
            if self._file is None:
                self._file = open(self.path, "rb")  # noqa: SIM115 (kept open for the next lines; close() closes it)
            handle = self._file
        handle.seek(offset)
        return handle.read(length)

    # The payload kept for requirements (made where they are made: a worker process; see ``payload``).
    encode = staticmethod(encode_payload)

    def add(self, sha256: str, payload: bytes) -> None:
        """Keep ``payload`` (from ``encode``) for content ``sha256``; ``save`` makes it part of the file (it is
        written to a temp file beside the store now, so the store holds no payload in memory)."""
        if self._temp is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._temp_path = artifacts.temp_beside(self.path)
            self._temp = os.fdopen(fd, "w+b", buffering=_COPY_CHUNK)
        elif self._temp_moved:
            self._temp.seek(self._temp_size)
            self._temp_moved = False
        line = b" ".join((sha256.encode("ascii"), self._settings, _digest(payload), payload))
        self._temp.write(line)
        self._temp.write(b"\n")
        self._index[sha256] = (_ADDED, self._temp_size, len(line))
        self._temp_size += len(line) + 1
        self._added_lines += 1
        self._added[sha256] = None

    def drop(self, sha256: str) -> None:
        """Forget what is kept for content ``sha256`` (its line goes at the next rewrite)."""
        self._index.pop(sha256, None)
        self._added.pop(sha256, None)

    def save(self, live: set[str]) -> None:
        """Write what was added: appended, or the whole file rewritten with the lines of ``live`` content
        hashes only when stale lines have piled up. A failure to write is logged and otherwise ignored."""
        if not self._loaded:
            self.load()
        kept = sum(1 for sha in live if sha in self._index)
        stale = self._line_count + len(self._added) - kept
        try:
            if self._line_count and stale <= max(MIN_STALE, STALE_SHARE * kept):
                if self._added:
                    with open(self.path, "ab") as handle:
                        # A line torn by a killed write is ended first, so it spoils no new one.
                        if self._torn_tail:
                            handle.write(b"\n")
                        self._copy_lines(handle, self._added)
                    self._torn_tail = False
            elif self._line_count or self._added:
                self._rewrite(live)
        except OSError as exc:
            logger.warning("%s: not written (%s); workflows will be parsed again next time", self.path, exc)
        finally:
            self.close()

    def close(self) -> None:
        """Let go of the files this store reads, and remove the temp file of lines added and not saved; the
        store reads its file anew when used again."""
        for handle in (self._file, self._temp):
            if handle is not None:
                handle.close()
        if self._temp_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temp_path)
        self._file = self._temp = self._temp_path = None
        self._temp_size = self._added_lines = self._line_count = 0
        self._temp_moved = False
        self._index.clear()
        self._added.clear()
        self._loaded = self._torn_tail = False

    def _copy_lines(self, handle: IO[bytes], shas: Any) -> int:
        """Write the latest line of each of ``shas`` (that has one) to ``handle``; return how many."""
        written = 0
        for sha in shas:
            where = self._index.get(sha)
            if where is not None:
                handle.write(self._read(where))
                handle.write(b"\n")
                written += 1
        return written

    def _rewrite(self, live: set[str]) -> None:
        first = self._temp is not None and self._temp_path is not None and not self._line_count
        if first and self._added_lines == len(self._added) and all(sha in live for sha in self._added):
            # A first save whose every line is live: the temp file is the store.
            assert self._temp is not None and self._temp_path is not None
            self._temp.flush()
            os.replace(self._temp_path, self.path)
            self._temp_path = None
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.rewrite.tmp")
        try:
            with open(tmp, "wb") as handle:
                self._copy_lines(handle, [sha for sha in self._index if sha in live])
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
