"""What tells one version of a file from another without reading it.

A cache that stands for a file's bytes (a parse kept between commands, a run made while another process might
rewrite the file) keys them by this: a file written again through a rename is another inode, and an edit in place
moves its mtime and, on a POSIX system, its ctime, which no program can set back (Windows reports the creation
time there: an edit that puts the mtime back and keeps the size goes unseen).
"""

from __future__ import annotations

import os
from pathlib import Path


def of(path: str | Path) -> list[int] | None:
    """Return ``[size, mtime_ns, ctime_ns, inode, device]`` of the file at ``path``, or None when it cannot be
    stat'ed (missing, unreadable, a name the system refuses)."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return None
    return [found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev]
