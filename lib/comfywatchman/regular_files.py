"""Opening a file the cycle reads whole or in part (a workflow, a model file to hash or check) only when it is a
regular file.

A folder of workflows or models may hold other things under a file's name: a named pipe (opening it waits for a
writer, forever), a link to a device (``/dev/zero`` never ends), a socket. Opened without blocking and refused
unless the open descriptor is a regular file, none of them can hold a cycle up; the caller reports the OSError
as it reports any unreadable file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

# Not blocking: a named pipe opens at once (then is refused); a regular file reads the same either way. Windows
# has neither flag's need (no named pipes in folders) nor O_NONBLOCK; O_BINARY keeps its reads byte for byte.
_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)


def open_regular(path: str | Path) -> tuple[int, os.stat_result]:
    """Return an open read-only descriptor of the regular file at ``path`` and its stat; raise OSError when it
    cannot be opened or is no regular file (the descriptor is then closed)."""
    fd = os.open(path, _FLAGS)
    try:
        found = os.fstat(fd)
        if not stat.S_ISREG(found.st_mode):
            raise OSError(f"not a regular file ({what_it_is(found.st_mode)})")
    except BaseException:
        os.close(fd)
        raise
    return fd, found


# What each read after the first asks for: the first read gets the whole file but for one that grew meanwhile.
_READ_ON = 64 * 1024


def read_regular(path: str | Path, limit: int | None = None) -> bytes:
    """Return the bytes of the regular file at ``path``, the first ``limit`` of them at most (all when None);
    raise OSError as ``open_regular`` does.

    Read with the descriptor calls themselves: a cold scan reads every workflow once, and a Python file object
    (made, buffered, closed) added about a third to the cost of reading a typical workflow file.
    """
    fd, found = open_regular(path)
    try:
        # read(n) sets n bytes aside before reading: ask for what the file holds, plus one byte that tells a
        # file grown since; setting the whole limit aside cost more than reading the file. Then read on until
        # the end (a read that gives nothing), as far as the limit.
        want = found.st_size + 1
        parts: list[bytes] = []
        total = 0
        while limit is None or total < limit:
            part = os.read(fd, want if limit is None else min(want, limit - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
            want = _READ_ON
    finally:
        os.close(fd)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def what_it_is(mode: int) -> str:
    """Return what a path whose stat has ``mode`` is, in a few words ("a regular file", "a named pipe", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a file"
