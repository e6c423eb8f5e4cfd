"""Model names as workflows write them: normalising and refusing names that escape their folder."""

from __future__ import annotations

import re
import unicodedata

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|[?#&=]")


def normalize(name: str) -> str:
    """Return ``name`` as a relative path key: ``\\`` to ``/``, Unicode NFC, surrounding space trimmed."""
    return unicodedata.normalize("NFC", name.strip().replace("\\", "/"))


def invalid_reason(name: str) -> str | None:
    """Return why ``name`` cannot be a file inside a model folder, or None when it can.

    Refused: empty, control characters (NUL included), URLs and URL parameters, absolute paths, drive
    letters, and any ``..`` segment. Such a name is never looked up on disk.
    """
    if not name or not name.strip():
        return "empty name"
    if _CONTROL.search(name):
        return "contains control characters"
    if _URL.search(name):
        return "looks like a URL or carries URL parameters"
    norm = normalize(name)
    if norm.startswith("/") or _DRIVE.match(norm):
        return "absolute path"
    if any(part == ".." for part in norm.split("/")):
        return "escapes its folder with '..'"
    return None


def lookup_key(name: str) -> str:
    """Return the case-insensitive key used to compare ``name`` with installed files."""
    return normalize(name).casefold()


def basename(name: str) -> str:
    """Return the file name of ``name`` without any subfolder."""
    return normalize(name).rsplit("/", 1)[-1]
