"""The report's digest of each scan.json line by the scan's digest of the same line: ``state/report_scan_keys.bin``.

The report keeps each workflow's part under its own digest of the workflow's scan.json line
(``parts.line_digest``: it leaves out the file's sha256, which the report does not depend on), so a cycle where
one workflow changed must know every line's digest. The scan writes its own digest of each line
(``scan_digests.bin``), and both digests are functions of the line's text without its ``reused`` flag, so the
report's digest of a line the scan's digest names never changes: kept here, it spares the report hashing all of
scan.json (13 MB at 2,000 workflows) in every cycle. Only the lines of the last scan.json are kept, so the file
stays the size of one list. A scan that makes many entries writes it too, for the scan.json it wrote
(``scan.primes_report``: the report's digest of a line it makes comes from the same hash as its own), so the
report after it hashes no line either. It is a cache, safe to lose: a torn or foreign file is ignored (every line
is then hashed once again).

The file is ``TAG``, a newline, the sha256 of the body, a newline, then the body: each pair as the scan's digest
(32 bytes) followed by the report's (32 bytes).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from comfywatchman.stages import cache_files, scan_digests

logger = logging.getLogger(__name__)

FILE = "report_scan_keys.bin"
#: Bump when either digest changes meaning (``parts.line_digest``, or the scan record's, whose tag is part of it).
TAG = b"report-scan-keys-2 " + scan_digests.TAG
_PAIR = 64


def load(path: Path) -> dict[bytes, bytes]:
    """Return the report's digest by the scan's digest, as kept at ``path``; empty when there is none, or it is
    of another format, torn or edited (a warning for one that cannot be read)."""
    try:
        body = cache_files.read_checked(path, TAG)
    except OSError as exc:
        logger.warning("%s: unreadable (%s); scan.json's lines are hashed instead", path, exc)
        return {}
    except cache_files.OtherFormat:
        logger.info("%s: of another format; scan.json's lines are hashed instead", path)
        return {}
    except ValueError:
        logger.warning("%s: torn or edited; scan.json's lines are hashed instead", path)
        return {}
    if body is None:
        return {}
    if len(body) % _PAIR:
        logger.warning("%s: torn or edited; scan.json's lines are hashed instead", path)
        return {}
    view = memoryview(body)
    return {bytes(view[at : at + 32]): bytes(view[at + 32 : at + _PAIR]) for at in range(0, len(body), _PAIR)}


def save(path: Path, pairs: Iterable[tuple[bytes, bytes]]) -> None:
    """Keep ``pairs`` (the scan's digest of a line, the report's) at ``path``, in place of what it held; a
    file that cannot be written is a warning (the next report hashes the lines again)."""
    body = b"".join(scan + mine for scan, mine in pairs if len(scan) == len(mine) == 32)
    try:
        cache_files.write_checked(path, TAG, body)
    except OSError as exc:
        logger.warning("%s: cannot be written (%s); the next report hashes scan.json's lines again", path, exc)
