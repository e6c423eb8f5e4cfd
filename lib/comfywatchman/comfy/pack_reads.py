"""What was read of each custom node pack, kept between cycles: ``state/pack_reads.json``.

Reading a pack parses the Python source of its modules (tens of milliseconds for a few small packs, a tenth
of a second for a pack of hundreds of modules), and that is paid again on every cycle although packs rarely
change. Each pack's read (node types, version, registry id, git remote, problems) is kept under a fingerprint
of everything the read depends on: the relative path, size and mtime_ns of each module file the reader lists,
of ``pyproject.toml`` and of ``.git/config``. A pack whose fingerprint is unchanged takes its kept read and
costs only the listing and the stats. The file also names the reader (its version, the Python that parsed,
a digest of the reader's code): another reader's reads are not used. It is a cache: a missing, broken or
foreign file means every pack is read again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

logger = logging.getLogger(__name__)

SCHEMA = "pack_reads"
# Bump when what a read produces changes in a way the code digest below cannot see (data the reader loads).
READER_VERSION = 1
# A file modified this close to (or after) the moment its pack was read may have been modified again within
# the file system's timestamp granularity (2 s on FAT, a few ms on ext4) without its size or mtime changing:
# such a read is not kept, and the pack is read again on the next cycle.
RACY_NS = 2_000_000_000
FIELDS = ("node_types", "version", "registry_id", "git_remote", "problems")
_READER_FILES = ("custom_nodes.py", "pack_source.py", "pack_reads.py")


def reader_id() -> str:
    """Return the identity of this reader: sha256 over its version, the Python version (which decides what
    parses) and the source of the modules that read a pack, so a change of code invalidates the kept reads."""
    digest = hashlib.sha256(f"{READER_VERSION}|{sys.version_info[0]}.{sys.version_info[1]}".encode())
    here = Path(__file__).parent
    for name in _READER_FILES:
        try:
            digest.update((here / name).read_bytes())
        except OSError:  # no source beside the module (a frozen build): the version alone names the reader
            digest.update(name.encode())
    return digest.hexdigest()


def fingerprint(root: Path, modules: Sequence[str | Path], folder: bool) -> tuple[str, int]:
    """Return (sha256 over the relative path, size and mtime_ns of each of ``modules`` and of the pack's
    ``pyproject.toml`` and ``.git/config`` when it is a ``folder``, the newest mtime_ns among them) for the pack
    at ``root`` (a single-file pack is its one module). A file that cannot be stat'ed counts as absent."""
    digest = hashlib.sha256()
    newest = 0
    extra = (root / "pyproject.toml", root / ".git" / "config") if folder else ()
    prefix = len(str(root)) + 1  # every file listed is under root (os.path.relpath costs more than the stat)
    for path in (*modules, *extra):
        text = str(path)
        relative = text[prefix:].replace(os.sep, "/") if folder else "."
        try:
            st = os.stat(text)
        except OSError:
            digest.update(f"{relative}\0-\n".encode("utf-8", "surrogateescape"))
            continue
        newest = max(newest, st.st_mtime_ns)
        digest.update(f"{relative}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest(), newest


class PackReads:
    """Pack path -> ``{fingerprint, node_types, version, registry_id, git_remote, problems}``."""

    def __init__(self, path: Path, clock: Callable[[], int] = time.time_ns) -> None:
        self.path = path
        self.clock = clock  # nanoseconds since the epoch, the file system's clock: tests give their own
        self.reader = reader_id()
        self.packs: dict[str, dict[str, Any]] = {}
        self.seen: set[str] = set()
        self.changed = False

    def load(self) -> PackReads:
        """Read the kept reads; a missing, broken or foreign file keeps none (every pack is read). Return self."""
        try:
            document = artifacts.read_optional(self.path, SCHEMA)
        except ArtifactError as exc:
            logger.info("%s; every custom node pack is read again", exc)
            document = None
        if document is not None and document["reader"] == self.reader:
            self.packs = dict(document["packs"])
        else:
            self.packs = {}
            self.changed = True  # a missing, broken or foreign file is replaced
        return self

    def get(self, pack_path: str, print_: str) -> dict[str, Any] | None:
        """Return the kept read of the pack at ``pack_path`` when it was made at fingerprint ``print_``."""
        self.seen.add(pack_path)
        kept = self.packs.get(pack_path)
        if kept is None or kept["fingerprint"] != print_:
            return None
        return {key: kept[key] for key in FIELDS}

    def put(self, pack_path: str, print_: str, newest_ns: int, started_ns: int, read: dict[str, Any]) -> None:
        """Keep ``read`` (the ``FIELDS`` of a pack) under ``print_``, unless a file of the pack was modified
        within ``RACY_NS`` of ``started_ns`` (when the read began): then nothing is kept for it."""
        self.seen.add(pack_path)
        if newest_ns >= started_ns - RACY_NS:
            self.changed |= self.packs.pop(pack_path, None) is not None
            return
        entry = {"fingerprint": print_, **{key: read[key] for key in FIELDS}}
        if self.packs.get(pack_path) != entry:
            self.packs[pack_path] = entry
            self.changed = True

    def save(self) -> bool:
        """Drop the reads of packs not seen since ``load`` and write the file atomically when anything changed;
        return whether it wrote. A file that cannot be written is logged and left: it is only a cache."""
        gone = [p for p in self.packs if p not in self.seen]
        for pack_path in gone:
            del self.packs[pack_path]
        if not (self.changed or gone):
            return False
        try:
            artifacts.write(self.path, {"reader": self.reader, "packs": self.packs}, SCHEMA, indent=None)
        except (OSError, ValueError, ArtifactError) as exc:  # ValueError: a path that is not UTF-8
            logger.warning("%s: cannot keep the custom node pack reads: %s", self.path, exc)
            return False
        self.changed = False
        return True
