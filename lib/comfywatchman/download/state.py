"""``state/downloads.json``: approvals and outcomes, which survive every re-generation of the queue.

A task's id is a hash of its folder type, its name (case-folded, as the scan compares names) and its URL: the
same file from the same source keeps its id, its approval and its history cycle after cycle; a new source is a
new task that needs its own approval. Updates are read-modify-write under a file lock, written atomically.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from comfywatchman import artifacts
from comfywatchman.workflow import names

FILE_NAME = "downloads.json"
SCHEMA = "downloads"


def task_id(folder: str | None, name: str, url: str) -> str:
    """Return the 12-hex-digit id of the task for ``name`` in ``folder`` from ``url``."""
    key = f"{folder or ''}\n{names.lookup_key(name)}\n{url}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


class DownloadState:
    """The approvals and outcomes file of one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._lock_path = state_dir / f"{FILE_NAME}.lock"

    def read(self) -> dict[str, dict[str, Any]]:
        """Return task id -> record (empty when there is no file yet). Raise ArtifactError when it is broken."""
        document = artifacts.read_optional(self.path, SCHEMA)
        return dict(document["tasks"]) if document else {}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if os.name != "nt":
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)  # short: held only while one record is written
            yield
        finally:
            os.close(fd)

    def update(self, updates: dict[str, Callable[[dict[str, Any] | None], dict[str, Any]]]) -> dict[str, Any]:
        """Apply each ``id -> function(old record or None) -> new record`` and write the file; return the tasks."""
        with self._locked():
            tasks = self.read()
            for ident, change in updates.items():
                tasks[ident] = change(tasks.get(ident))
            artifacts.write(self.path, {"tasks": tasks}, SCHEMA)
            return tasks


def new_record(ident: str, name: str, folder: str | None, url: str) -> dict[str, Any]:
    """Return the record of a task nobody has approved or run yet."""
    return {"id": ident, "name": name, "folder": folder, "url": url, "approved_at": None, "approved_by": None,
            "outcome": None}  # fmt: skip
