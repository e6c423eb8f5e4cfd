"""A content-addressed store of what each workflow needs, so an unchanged workflow is never parsed twice.

``state/requirements.pack`` holds one line per workflow content hash::

    <sha256 of the workflow file> <settings hash> <sha256 of PAYLOAD> <PAYLOAD>

where PAYLOAD is the compact JSON of the requirements (format, container, models with their origins and
declarations, nodes with their ids and modes) the extractor made under that settings hash. It is a cache,
safe to lose: a line that is torn, edited (its checksum no longer matches) or made under other settings is
ignored and that workflow parsed again. New lines are appended; when stale lines (superseded, other settings,
workflows no longer listed) outnumber a quarter of the live ones, the file is rewritten through a temp file
and a rename. Neither is fsynced: what a crash loses costs a parse.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FILE = "requirements.pack"
# Rewrite the file when it holds more than this share of stale lines (and at least MIN_STALE of them).
STALE_SHARE = 0.25
MIN_STALE = 64


def _digest(payload: bytes) -> bytes:
    return hashlib.sha256(payload).hexdigest().encode("ascii")


class RequirementStore:
    """Requirements by workflow content hash, in one file, for one settings hash."""

    def __init__(self, path: Path, settings_hash: str) -> None:
        self.path = path
        self.settings_hash = settings_hash
        self._settings = settings_hash.encode("ascii")
        # content hash -> (digest, payload) of its latest line under these settings
        self._lines: dict[str, tuple[bytes, bytes]] = {}
        self._line_count = 0
        self._added: dict[str, bytes] = {}
        self._loaded = False
        self._torn_tail = False

    def load(self) -> None:
        """Read the file's lines (not their payloads); a missing or unreadable file is an empty store."""
        self._loaded = True
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            logger.warning("%s: unreadable (%s); every workflow is parsed again", self.path, exc)
            return
        self._torn_tail = bool(raw) and not raw.endswith(b"\n")
        for line in raw.split(b"\n"):
            if not line:
                continue
            self._line_count += 1
            parts = line.split(b" ", 3)
            if len(parts) == 4 and parts[1] == self._settings and len(parts[0]) == 64:
                self._lines[parts[0].decode("ascii", "replace")] = (parts[2], parts[3])

    def get(self, sha256: str) -> dict[str, Any] | None:
        """Return the requirements kept for content ``sha256``, or None when there are none usable."""
        if not self._loaded:
            self.load()
        found = self._lines.get(sha256)
        if found is None:
            return None
        digest, payload = found
        if _digest(payload) != digest:
            logger.debug("%s: the line of %s is torn or edited; parsed again", self.path, sha256)
            return None
        try:
            data = json.loads(payload)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def encode(requirements: dict[str, Any]) -> bytes:
        """Return the payload kept for ``requirements`` (made where they are made: a worker process)."""
        # ASCII escapes and no cycle check: the fastest the C encoder goes (the data is plain, acyclic JSON).
        return json.dumps(requirements, separators=(",", ":"), check_circular=False).encode("ascii")

    def add(self, sha256: str, payload: bytes) -> None:
        """Keep ``payload`` (from ``encode``) for content ``sha256``; ``save`` writes it."""
        self._added[sha256] = payload
        self._lines[sha256] = (_digest(payload), payload)

    def drop(self, sha256: str) -> None:
        """Forget what is kept for content ``sha256`` (its line goes at the next rewrite)."""
        self._lines.pop(sha256, None)
        self._added.pop(sha256, None)

    def save(self, live: set[str]) -> None:
        """Write what was added: appended, or the whole file rewritten with the lines of ``live`` content
        hashes only when stale lines have piled up. A failure to write is logged and otherwise ignored."""
        if not self._loaded:
            self.load()
        kept = sum(1 for sha in live if sha in self._lines)
        stale = self._line_count + len(self._added) - kept
        try:
            if self._line_count and stale <= max(MIN_STALE, STALE_SHARE * kept):
                if self._added:
                    lines = b"".join(self._line(sha, self._lines[sha]) for sha in self._added)
                    with open(self.path, "ab") as handle:
                        # A line torn by a killed write is ended first, so it spoils no new one.
                        handle.write(b"\n" + lines if self._torn_tail else lines)
                    self._torn_tail = False
            elif self._line_count or self._added:
                self._rewrite(live)
        except OSError as exc:
            logger.warning("%s: not written (%s); workflows will be parsed again next time", self.path, exc)
        self._added.clear()

    def _line(self, sha256: str, entry: tuple[bytes, bytes]) -> bytes:
        return b" ".join((sha256.encode("ascii"), self._settings, entry[0], entry[1])) + b"\n"

    def _rewrite(self, live: set[str]) -> None:
        text = b"".join(self._line(sha, entry) for sha, entry in self._lines.items() if sha in live)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._line_count = text.count(b"\n")
