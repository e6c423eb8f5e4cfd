"""Model names as workflows write them: normalising and refusing names that escape their folder."""

from __future__ import annotations

import re
import unicodedata

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_PARAMETER = re.compile(r"[?#]|&\w+=")
# A name every rule below accepts at a glance: ASCII segments of safe characters joined by "/", none empty,
# not starting or ending with a space (then ".." and a trailing "." are all that is left to refuse).
_PLAIN = re.compile(r"[A-Za-z0-9_.()\[\]+,' -]+(?:/[A-Za-z0-9_.()\[\]+,' -]+)*")


def normalize(name: str) -> str:
    """Return ``name`` as a relative path key: ``\\`` to ``/``, Unicode NFC, surrounding space trimmed."""
    text = name.strip().replace("\\", "/")
    # ASCII text is already NFC; the check is much cheaper than normalising (names are looked up by the 100,000).
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def invalid_reason(name: str) -> str | None:
    """Return why ``name`` cannot be a file inside a model folder, or None when it can.

    Refused: empty, control characters (NUL included), URLs and URL parameters, absolute paths, drive
    letters, any ``..`` segment, and a folder with no file name. Such a name is never looked up on disk and
    never sent to a search service: either would act on hostile or broken input.
    """
    if _PLAIN.fullmatch(name) and ".." not in name and not name.endswith((".", " ")) and not name.startswith(" "):
        return None  # the common case, decided in one pass (scan checks every name of every workflow)
    if not name or not name.strip():
        return "empty file name"
    if _CONTROL.search(name):
        return "file name contains control characters"
    if _URL_SCHEME.match(name.strip()):
        return "a URL, not a file name"
    if _URL_PARAMETER.search(name):
        return "file name carries URL parameters"
    norm = normalize(name)
    if norm.startswith("/"):
        return "absolute path"
    if _DRIVE.match(norm):
        return "path with a drive letter"
    parts = norm.split("/")
    if any(part == ".." for part in parts):
        return "path escapes its folder (..)"
    if not parts[-1].strip() or parts[-1] == ".":
        return "no file name after the folder"
    return None


def lookup_key(name: str) -> str:
    """Return the case-insensitive key used to compare ``name`` with installed files."""
    return normalize(name).casefold()


def basename(name: str) -> str:
    """Return the file name of ``name`` without any subfolder."""
    return normalize(name).rsplit("/", 1)[-1]
