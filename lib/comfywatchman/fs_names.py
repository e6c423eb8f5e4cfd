"""File names as the file system hands them over, which may not be text.

On Linux a name is bytes: one copied from an old Latin-1 system, or unpacked from an archive in another encoding,
holds bytes that are not UTF-8. Python gives them back as lone surrogates (``surrogateescape``), which no JSON
artifact can hold and no schema check can read. The walks leave such names out and report each one, written
with its odd bytes as ``\\xff`` escapes (``shown``), so that the person who owns the file can rename it.
"""

from __future__ import annotations

#: What a finding about such a name says after the name.
NOT_TEXT = "its name is not UTF-8 text, so it is left out (rename it to use it)"


def is_text(name: str) -> bool:
    """Return whether ``name`` (as ``os.scandir`` or ``os.walk`` gave it) is UTF-8 text, so an artifact can hold it."""
    if name.isascii():
        return True
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(path: str) -> str:
    """Return ``path`` with the bytes that are not UTF-8 written as ``\\xff`` escapes: text any log or artifact
    can hold, that names the file for a person."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def finding(path: str) -> str:
    """Return the one-line finding about the file or folder at ``path`` whose name is not UTF-8 text."""
    return f"{shown(path)}: {NOT_TEXT}"
