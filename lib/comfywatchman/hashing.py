"""The sha256 of installed model files, each computed at most once: ``state/hashes.json``.

A model file runs to gigabytes, so its hash is kept by ``(path, size, mtime_ns)``: a lookup is one dict access
and one ``stat``, and a file is hashed again only when it was replaced (another size or modification time).
Hashing reads in 1 MiB chunks into one reused buffer, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import artifacts, regular_files
from comfywatchman.errors import ArtifactError

logger = logging.getLogger(__name__)

FILE = "hashes.json"
SCHEMA = "hashes"
CHUNK = 1 << 20  # 1 MiB: large enough that the hash, not the system calls, is the cost
SAFETENSORS_HEADER_MAX = 100 << 20  # safetensors refuses headers over 100 MB; a larger length is not a header


def file_sha256(path: str | Path) -> str:
    """Return the sha256 (hex) of the file at ``path``, read in 1 MiB chunks. Raise OSError if unreadable."""
    return file_sha256_head(path)[0]


def file_sha256_head(path: str | Path, size: int | None = None) -> tuple[str, bytes]:
    """Return the sha256 (hex) of the file at ``path`` and its first ``HEAD`` bytes (fewer when the first read
    gave fewer: a shorter file), read in 1 MiB chunks: a ``.safetensors`` file's header length is then known
    without opening it again (``safetensors_truncated_head``). ``size``: the file's size when the caller has
    just taken it (else it is asked for). Raise OSError if unreadable."""
    digest = hashlib.sha256()
    head = b""
    fd, found = regular_files.open_regular(path)  # a pipe or a device under a model's name: refused, not read
    with open(fd, "rb", buffering=0, closefd=True) as handle:
        # A buffer no larger than the file (plus one byte, to see its end in one read): a 1 MiB buffer made
        # and zeroed for each of thousands of small files cost several times their hashing. A file that grows
        # meanwhile is still read to its end, in more reads.
        if size is None:
            size = found.st_size
        buffer = bytearray(min(CHUNK, max(size, 0) + 1))
        view = memoryview(buffer)
        count = handle.readinto(buffer)
        if count:
            head = bytes(view[: min(count, HEAD)])
        while count:
            # hashlib releases the GIL for large updates, so a hashing thread never stalls the others.
            digest.update(view[:count])
            count = handle.readinto(buffer)
    return digest.hexdigest(), head


HEAD = 8  # what ``file_sha256_head`` keeps of a file: a safetensors header's length


def safetensors_truncated(path: str | Path, size: int) -> bool:
    """Return whether the ``.safetensors`` file at ``path`` (``size`` bytes) is cut short: its header's length
    (the first 8 bytes, little-endian) does not fit in the file, or the file is shorter than those 8 bytes.
    Raise OSError if unreadable. Only the header is checked, not the tensors' data offsets."""
    if size < 8:
        return True
    fd, _ = regular_files.open_regular(path)
    try:
        return safetensors_truncated_head(os.read(fd, 8), size)
    finally:
        os.close(fd)


def safetensors_truncated_head(head: bytes, size: int) -> bool:
    """Return ``safetensors_truncated`` of a file of ``size`` bytes whose first 8 bytes are ``head``."""
    if size < 8:
        return True
    length = int.from_bytes(head[:8], "little")
    return length > SAFETENSORS_HEADER_MAX or 8 + length > size


# A NamedTuple, not a frozen dataclass: every cycle's process makes this class, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class Stat(NamedTuple):
    """What identifies one version of a file: its size and modification time in nanoseconds."""

    size: int
    mtime_ns: int


def stat_of(path: str | Path) -> Stat | None:
    """Return the size and mtime of ``path``, or None when it cannot be reached."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stat(st.st_size, st.st_mtime_ns)


class HashStore:
    """Absolute path -> ``{size, mtime_ns, sha256, hashed_at}`` of every file hashed so far."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, dict[str, Any]] = {}
        self.changed = False

    def load(self) -> HashStore:
        """Read the store (a missing or unreadable one starts empty, with a warning); return self."""
        try:
            document = artifacts.read_optional(self.path, SCHEMA)
        except ArtifactError as exc:
            logger.warning("%s; every file is hashed again", exc)
            document = None
        self.files = dict(document["files"]) if document else {}
        return self

    def get(self, path: str, stat: Stat) -> str | None:
        """Return the kept sha256 of ``path`` when it was hashed at this very size and mtime, else None."""
        kept = self.files.get(path)
        if kept is None or kept["size"] != stat.size or kept["mtime_ns"] != stat.mtime_ns:
            return None
        return str(kept["sha256"])

    def put(self, path: str, stat: Stat, sha256: str, hashed_at: str) -> None:
        """Keep ``sha256`` as the hash of ``path`` at ``stat``."""
        self.files[path] = {"size": stat.size, "mtime_ns": stat.mtime_ns, "sha256": sha256, "hashed_at": hashed_at}
        self.changed = True

    def forget_except(self, keep: set[str]) -> None:
        """Drop the entries of files not in ``keep`` (removed from the install, or no longer declared)."""
        gone = [p for p in self.files if p not in keep]
        for path in gone:
            del self.files[path]
        self.changed |= bool(gone)

    def save(self) -> None:
        """Write the store atomically when anything changed since it was read."""
        if self.changed:
            artifacts.write(self.path, {"files": self.files}, SCHEMA, indent=None)
            self.changed = False
