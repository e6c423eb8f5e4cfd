"""Where a download may write: inside its model folder and nowhere else.

The target is the first directory of the task's folder type plus the name exactly as the workflow wrote it
(subfolder kept), so the widget value resolves as written. Names that could leave the folder are refused, not
repaired; subfolders are created one at a time and none may be a symlink; the resolved parent must lie inside
the resolved model folder, checked again right before the rename; files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

from comfywatchman.workflow import names

_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
_WINDOWS_RESERVED = re.compile(r"(?i)^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
MAX_NAME_BYTES = 255


class UnsafeTarget(Exception):
    """A target that would put bytes outside the model folder, or through a symlink. The message says why."""


def sanitize_filename(raw: str) -> str | None:
    """Return ``raw`` (a name from Content-Disposition or a URL) as a safe single file name, or None if nothing
    usable is left: directory parts, control and reserved characters, leading dots and trailing dots or spaces
    removed, Windows device names refused, at most 255 bytes (the extension kept)."""
    text = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1])
    text = _UNSAFE_CHARS.sub("_", text).strip().lstrip(".").rstrip(". ")
    if not text or _WINDOWS_RESERVED.match(text):
        return None
    while len(text.encode("utf-8")) > MAX_NAME_BYTES:
        stem, dot, ext = text.rpartition(".")
        text = (stem[:-1] + dot + ext) if dot and stem else text[:-1]
    return text or None


def content_disposition_name(header: str | None) -> str | None:
    """Return the sanitised file name a ``Content-Disposition`` header offers (``filename*`` wins), or None."""
    if not header:
        return None
    match = re.search(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", header, re.IGNORECASE)
    if match:
        try:
            return sanitize_filename(unquote(match.group(2).strip(), encoding=match.group(1) or "utf-8"))
        except LookupError:
            pass
    match = re.search(r'filename\s*=\s*"((?:[^"\\]|\\.)*)"|filename\s*=\s*([^;]+)', header, re.IGNORECASE)
    if not match:
        return None
    return sanitize_filename((match.group(1) or match.group(2) or "").strip())


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


# A NamedTuple, not a frozen dataclass: making a dataclass costs a process ~0.4 ms (Python 3.11), a NamedTuple a
# tenth of that.
class Target(NamedTuple):
    """Where one file goes: ``root`` (a model folder, resolved) and ``name`` (relative, ``/`` separated)."""

    root: Path
    name: str

    @property
    def path(self) -> Path:
        """The final file path."""
        return self.root.joinpath(*self.name.split("/"))

    def part_path(self, tag: str) -> Path:
        """The part file beside the target; ``tag`` ties it to one source so a resume never mixes two files.
        Its ``.part`` extension is no model extension: neither ComfyUI nor the scan ever lists it."""
        final = self.path
        return final.with_name(f"{final.name}.{tag}.part")

    def prepare(self) -> Path:
        """Create the missing subfolders below ``root`` one at a time and return the parent folder.

        Raise UnsafeTarget when a subfolder is a symlink, is not a folder, or resolves outside ``root``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        current = self.root
        for part in self.name.split("/")[:-1]:
            current = current / part
            with contextlib.suppress(FileExistsError):
                current.mkdir()
            mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafeTarget(f"{current} is a symlink; a download never writes through one")
            if not stat.S_ISDIR(mode):
                raise UnsafeTarget(f"{current} is not a folder")
        self.check_contained()
        return current

    def check_contained(self) -> None:
        """Raise UnsafeTarget unless the target's parent resolves inside ``root`` and the target is no symlink."""
        parent = os.path.realpath(self.path.parent)
        if not _within(parent, str(self.root)):
            raise UnsafeTarget(f"{self.path} resolves to {parent}, outside the model folder {self.root}")
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(self.path).st_mode):
                raise UnsafeTarget(f"{self.path} is a symlink; not replaced")


def target_for(folder_dirs: list[str], name: str) -> Target:
    """Return the Target for ``name`` in the first of ``folder_dirs`` (the folder type's directories).

    Raise UnsafeTarget when there is no directory or the name is not a safe relative file path: anything
    ``names.invalid_reason`` refuses, and any part that sanitising would change (it is refused, never renamed,
    since a renamed file would not resolve as the workflow writes it).
    """
    if not folder_dirs:
        raise UnsafeTarget("the install has no folder of this type")
    reason = names.invalid_reason(name)
    if reason:
        raise UnsafeTarget(f"{name!r}: {reason}")
    normalized = names.normalize(name)
    for part in normalized.split("/"):
        if part in ("", ".") or sanitize_filename(part) != part:
            raise UnsafeTarget(f"{name!r}: {part!r} is not a safe file or folder name")
    root = Path(os.path.realpath(folder_dirs[0]))
    return Target(root, normalized)


def open_nofollow(path: Path, flags: int, mode: int = 0o644) -> int:
    """Return a file descriptor for ``path`` opened with ``flags`` and ``O_NOFOLLOW`` where the OS has it;
    raise UnsafeTarget when the path is not a regular file (a FIFO or device planted there)."""
    try:
        fd = os.open(path, flags | _NOFOLLOW | getattr(os, "O_BINARY", 0), mode)
    except OSError as exc:
        if _NOFOLLOW and exc.errno == 40:  # ELOOP: the last component is a symlink
            raise UnsafeTarget(f"{path} is a symlink; a download never writes through one") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeTarget(f"{path} is not a regular file")
    return fd
