"""Checks made before a cycle or a stage writes anything: the ComfyUI root is an install, the home is writable.

Both are configuration problems (exit 2, nothing written): a root that is missing or empty is most often a
drive that is not mounted, and running on it would record every workflow as removed; a home that cannot be
written would fail in the middle of the cycle with a traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from comfywatchman import artifacts
from comfywatchman.config import Config

# Folders every ComfyUI install has, whatever its kind: a git checkout (they are in the repository), the
# Windows portable build (inside its ComfyUI\ folder) and ComfyUI Desktop's base folder (which has no
# main.py). One of them is enough, so an install whose models all live in extra_model_paths still passes.
INSTALL_MARKS = ("models", "custom_nodes")
ROOT_SETTING = "set comfyui.root, COMFYUI_ROOT or --comfyui-root"
HOME_SETTING = "give --home, COMFYWATCHMAN_HOME or [paths] home a folder you can write"

_HOME_REASONS = {
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


def _has_marks(folder: Path) -> bool:
    return any((folder / mark).is_dir() for mark in INSTALL_MARKS)


def comfyui_root_problem(root: Path) -> str | None:
    """Return one line naming ``root`` and what is wrong with it, or None when it looks like a ComfyUI install.

    Missing, not a folder, unreadable, or lacking every one of ``INSTALL_MARKS`` (an empty mount point looks
    like that) are problems; a portable build's outer folder gets a hint to its ComfyUI folder.
    """
    try:
        if not root.exists():
            return f"{root}: ComfyUI root does not exist (a drive that is not mounted?); {ROOT_SETTING}"
        if not root.is_dir():
            return f"{root}: ComfyUI root is not a folder; {ROOT_SETTING}"
        with os.scandir(root) as entries:
            empty = next(entries, None) is None
        if _has_marks(root):
            return None
        inner = root / "ComfyUI"
    except OSError as exc:
        return f"{root}: cannot read the ComfyUI root: {exc.strerror or exc}"
    if _has_marks(inner):
        return f"{root}: not a ComfyUI install, but {inner} is one (the portable build's inner folder)"
    what = "it is empty (a drive that is not mounted?)" if empty else "it has no models/ or custom_nodes/ folder"
    return f"{root}: not a ComfyUI install: {what}; {ROOT_SETTING}"


def home_problem(config: Config) -> str | None:
    """Return one line naming the folder of the home that cannot be written, and why, or None when all can.

    Creates ``state/``, ``log/`` and the reports folder when missing and writes (then removes) a temporary
    file in each, so a read-only mount, a folder without write permission or a file in the way is found
    before the cycle lock is taken.
    """
    for folder in (config.state_dir, config.log_dir, config.reports_dir):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = artifacts.temp_beside(folder / "write-check")  # removed at once; by remove_leftovers if killed
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            blocker = _file_in_the_way(folder)
            if blocker is not None:
                return f"{blocker}: is a file, so the folder {folder} cannot be made; {HOME_SETTING}"
            reason = _HOME_REASONS.get(exc.errno or 0, exc.strerror or str(exc))
            return f"{folder}: cannot write there: {reason}; {HOME_SETTING}"
    return None


def _file_in_the_way(folder: Path) -> Path | None:
    """Return the nearest of ``folder`` and its parents that exists but is no folder, or None."""
    for path in (folder, *folder.parents):
        try:
            if path.exists():
                return None if path.is_dir() else path
        except OSError:
            return None
    return None


def problem(config: Config) -> str | None:
    """Return the first preflight problem of ``config`` (the ComfyUI root first, then the home), or None."""
    return comfyui_root_problem(config.comfyui_root) or home_problem(config)
