"""Writing a cache file of the stages: whole or not at all, without waiting for the disk.

An artifact is written through a temp file, fsync'ed and renamed (``artifacts.atomic_write_bytes``), so that a
crash never leaves it half written. A cache file (``scan_digests.bin``, ``search_delta.bin``,
``verify_delta.bin``, the ``.pack`` files) needs the rename but not the fsync: each is checked when it is read
(a checksum, a digest of its lines, or JSON that a cut or a zeroed block breaks) and keyed by the files it goes
with, so one that a crash left old, empty or torn is ignored and costs the next cycle a full run, never a wrong
answer. Its fsync was a wait on the disk in every cycle, for nothing; so was the flush of its data that ext4
starts when a file is renamed over another, which ``artifacts.replace_unflushed`` avoids.
"""

from __future__ import annotations

import zlib

TYPE_CHECKING = False  # typing is left unloaded: the walk ahead reads its plan before loading the program
if TYPE_CHECKING:
    from pathlib import Path


def write_cache(path: Path, *chunks: bytes | bytearray) -> None:
    """Write ``chunks``, one after the other, to ``path`` through a temp file beside it and a rename (no
    fsync, no flush: see the module). Raise OSError when it cannot be written (``path`` is then as it was)."""
    from comfywatchman import artifacts  # here: a process reads the plan of its walk ahead before loading it

    artifacts.atomic_write_bytes(path, *chunks, durable=False)


class OtherFormat(ValueError):
    """A checked cache file written with another tag (another format, or another file altogether)."""


def write_checked(path: Path, tag: bytes, *body: bytes) -> None:
    """Write ``body`` (its pieces one after the other, never joined in memory) to ``path`` (``write_cache``)
    behind the line ``tag`` and a line with the checksum of ``body`` (``checksum``), for ``read_checked``.
    Raise OSError when it cannot be written."""
    write_cache(path, tag, b"\n", checksum(*body), b"\n", *body)


def read_checked(path: Path, tag: bytes) -> bytes | None:
    """Return the body of the cache file at ``path`` that ``write_checked`` wrote with ``tag``, or None when
    there is none. Raise OtherFormat when it has another tag, ValueError when its body is not the one its
    checksum was made of (torn, or edited), OSError when it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return checked_body(data, tag)


def checked_body(data: bytes, tag: bytes) -> bytes:
    """Return the body of ``data``, the whole of a cache file that ``write_checked`` wrote with ``tag``. Raise
    OtherFormat when it has another tag, ValueError when its body is not the one its checksum was made of."""
    found, _, rest = data.partition(b"\n")
    if found != tag:
        raise OtherFormat("of another format")
    line, _, body = rest.partition(b"\n")
    if not matches(line, body):
        raise ValueError("its body does not match its checksum (torn or edited)")
    return body


_CRC32 = b"crc32:"


def checksum(*pieces: bytes | bytearray | memoryview) -> bytes:
    """Return the line a cache file keeps to tell a whole body from a torn or edited one: ``crc32:`` and the
    CRC-32 of the body (``pieces`` one after the other) in hex. A check against accidents, not tampering: a
    cut, a zeroed block or a changed byte changes it (two bodies share one once in 4 billion), at a third of
    the cost of a sha256 (5 MB: ~1 ms instead of ~3 ms, paid on every read and write of a cache)."""
    crc = 0
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
    return b"%s%08x" % (_CRC32, crc)


def matches(line: bytes, body: bytes | bytearray | memoryview) -> bool:
    """Return whether ``line`` is the checksum of ``body``: ``checksum``'s, or the sha256 in hex an earlier
    version wrote (its files are still read)."""
    if line.startswith(_CRC32):
        return line == checksum(body)
    import hashlib  # only for a file of an earlier version: hashlib's OpenSSL costs every process milliseconds

    return hashlib.sha256(body).hexdigest().encode("ascii") == line
