"""The digest of each result line of ``search.json``, written by the search beside it: ``state/search_digests.bin``.

The report finds the search answers that changed by the digest of each search.json result line (``line_digest``):
hashing all of search.json (4.4 MB at 2,000 workflows) costs it some 10 ms in a cycle where one workflow changed.
The search knows those digests for less: a line it copies from the last search.json (``search_delta``) keeps the
digest the last record gave it, and only the lines it makes are hashed. So it writes, after search.json::

    search-digests-1
    <sha256 of the next line>
    {"search": [size, mtime_ns, ctime_ns, inode] of search.json, "digests": [...]}

one digest per result line, in order. The report trusts it only for the very file it describes (``load``: the
stat of search.json now is the one recorded; a search.json written again, edited by hand or copied elsewhere is
another file) and hashes search.json's lines as before otherwise. The file is a cache, safe to lose: a torn,
edited or foreign record is ignored, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import orjson

from comfywatchman.stages import cache_files
from comfywatchman.stages.scan_digests import file_key

logger = logging.getLogger(__name__)

FILE = "search_digests.bin"
#: Bump when what the file holds changes meaning (or ``line_digest`` does).
TAG = b"search-digests-1"


def line_digest(line: bytes) -> str:
    """Return the digest of one search.json result line (its bytes without the comma and newline): 32 hex
    characters."""
    return hashlib.blake2b(line, digest_size=16).hexdigest()


def record_path(search_path: Path) -> Path:
    """Return where the record of the search.json at ``search_path`` is."""
    return search_path.with_name(FILE)


def load(search_path: Path) -> list[str] | None:
    """Return the digests of the result lines of the search.json at ``search_path``, in order, from its
    record; None when there is none that is whole and describes that very file (then the caller hashes the
    lines itself)."""
    path = record_path(search_path)
    try:
        body = cache_files.read_checked(path, TAG)
        if body is None:
            return None
        document = orjson.loads(body)
        digests = document["digests"]
        if not isinstance(digests, list) or (
            digests and (set(map(type, digests)) != {str} or set(map(len, digests)) != {32})
        ):
            raise ValueError("a digest is not one")
        described = document["search"]
    except OSError as exc:
        logger.warning("%s: unreadable (%s); search.json's lines are hashed instead", path, exc)
        return None
    except (ValueError, TypeError, KeyError) as exc:  # orjson.JSONDecodeError is a ValueError
        logger.info("%s: not a record of search.json's lines (%s); they are hashed instead", path, exc)
        return None
    if described != file_key(search_path):
        logger.debug("%s: describes another search.json than the one on disk; its lines are hashed", path)
        return None
    return digests


def digests_of(lines: Sequence[bytes], origins: Sequence[int | None] | None, last: Sequence[str] | None) -> list[str]:
    """Return the digest of each of ``lines``: a line copied from the last search.json (``origins``: its index
    there, None for a line made now) takes the digest of the last record ``last``; the others are hashed."""
    if origins is None or last is None or len(origins) != len(lines):
        return [line_digest(line) for line in lines]
    return [last[at] if at is not None else line_digest(line) for line, at in zip(lines, origins, strict=True)]


def save(search_path: Path, digests: list[str]) -> None:
    """Write the record of the search.json just written at ``search_path`` (atomically; a failure costs the
    next report a hash of search.json's lines, with a warning)."""
    path = record_path(search_path)
    try:
        body = orjson.dumps({"search": file_key(search_path), "digests": digests})
        cache_files.write_checked(path, TAG, body)
    except OSError as exc:
        logger.warning("%s: cannot be written (%s); the next report hashes search.json's lines", path, exc)
