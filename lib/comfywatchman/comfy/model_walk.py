"""The walk of one model folder: the model files under it with their sizes, within its bounds.

Plain data in, plain data out (what marshal writes), and few imports: the cache stage runs it, and so does a
child forked at the start of a cycle's process, before the rest of the program is loaded (``walk_ahead``).
"""

from __future__ import annotations

import os

from comfywatchman import fs_names
from comfywatchman.comfy.walk_bound import WalkBound

TYPE_CHECKING = False  # typing and pathlib are left unloaded (see the module); mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

    #: What one walk found: the model files as (name, size) sorted by name, why a bound cut it short (None when
    #: none did), how many entries it looked at, and the paths left out because their name is not UTF-8 text.
    Walked = tuple[list[tuple[str, int]], str | None, int, list[str]]

# Listing a folder by an open descriptor lets each file's stat resolve its name from that folder (fstatat)
# rather than walking the whole path again: a tenth less time over tens of thousands of files. Not on Windows.
_BY_DESCRIPTOR = os.scandir in os.supports_fd
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


def walk(folder: str, directory: str, suffixes: Iterable[str], max_depth: int, max_entries: int) -> Walked:
    """Return what the walk of ``directory``, a folder of folder type ``folder``, found (``Walked``): the files
    whose lower-case suffix is one of ``suffixes``, within ``max_depth`` levels and ``max_entries`` entries; for
    ``diffusers``, the model folders (each with a ``model_index.json``), of size 0, unbounded as before."""
    skipped: list[str] = []
    if folder == "diffusers":
        return diffusers_entries(directory, skipped), None, 0, skipped
    bound = WalkBound(max_depth, max_entries)
    found = walk_pairs(directory, frozenset(suffixes), bound, skipped)
    return found, bound.reason, bound.entries, skipped


def walk_pairs(
    directory: Path | str,
    suffixes: frozenset[str],
    bound: WalkBound | None = None,
    skipped: list[str] | None = None,
) -> list[tuple[str, int]]:
    """Return the files under ``directory`` whose lower-case suffix is in ``suffixes`` as ``(name, size)``,
    sorted by name, each folder listed once (symlink loops), within ``bound``; files and folders whose name is
    not UTF-8 text are left out, their paths added to ``skipped``."""
    skipped = [] if skipped is None else skipped
    # (name, size) pairs, made into dicts by the cache (a child process sends them as they are): names are
    # unique within one walk (each folder is listed once), so sorting the pairs sorts by name alone.
    found: list[tuple[str, int]] = []
    seen: set[tuple[int, int]] = set()
    stack = [(os.fspath(directory), "")]
    while stack:
        if bound is not None and not bound.room_for_more():
            break
        current, prefix = stack.pop()
        try:
            fd = os.open(current, _FOLDER_FLAGS) if _BY_DESCRIPTOR else None
        except OSError:
            continue
        try:
            stat = os.stat(current) if fd is None else os.fstat(fd)
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                continue
            seen.add(key)
            with os.scandir(current if fd is None else fd) as it:
                entries = list(it)
            if bound is not None:
                entries = bound.admit(entries)
            # The sizes are read while the folder is open: an entry listed by descriptor stats through it.
            _add_files(entries, current, prefix, suffixes, bound, stack, found, skipped)
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    found.sort()
    return found


def _add_files(
    entries: list[os.DirEntry[Any]],
    current: str,
    prefix: str,
    suffixes: frozenset[str],
    bound: WalkBound | None,
    stack: list[tuple[str, str]],
    found: list[tuple[str, int]],
    skipped: list[str],
) -> None:
    # This runs once per file of the install (tens of thousands): the loop does no more than it must, and
    # the one system call per model file is the stat that gives its size.
    append = found.append
    parent = current if current.endswith(os.sep) else current + os.sep
    for entry in entries:
        name = entry.name
        if not name.isascii() and not fs_names.is_text(name):  # isascii first: no call for nearly every name
            skipped.append(parent + name)  # no artifact can hold it: reported, left out
            continue
        try:
            if entry.is_dir():
                if name[:1] != "." and (bound is None or bound.may_enter(prefix + name)):
                    stack.append((parent + name, f"{prefix}{name}/"))
                continue
            dot = name.rfind(".")
            if dot > 0 and name[dot:].lower() in suffixes:
                append((prefix + name, entry.stat().st_size))
        except OSError:
            continue  # a broken symlink is not a model file


def diffusers_entries(directory: Path | str, skipped: list[str] | None = None) -> list[tuple[str, int]]:
    """Return the diffusers models under ``directory`` (each folder with a ``model_index.json``) as
    ``(name, 0)``, sorted by name; folders whose name is not UTF-8 text are left out, added to ``skipped``."""
    # Imported here: few installs have a diffusers folder, and the walk ahead of a cycle starts before the
    # rest of the program (and folders' regular expressions) is loaded.
    from comfywatchman.comfy.folders import walk_once

    out = []
    for root, dirs, names in walk_once(directory):  # two symlink loops made os.walk run on forever
        if not all(map(fs_names.is_text, dirs)):
            if skipped is not None:
                skipped += [os.path.join(root, d) for d in dirs if not fs_names.is_text(d)]
            dirs[:] = [d for d in dirs if fs_names.is_text(d)]
        if "model_index.json" in names:
            out.append((os.path.relpath(root, directory).replace(os.sep, "/"), 0))
            dirs[:] = []
    return sorted(out)
