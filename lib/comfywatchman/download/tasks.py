"""The download tasks as a person reviews them: the search stage's queue joined with ``downloads.json``
(approval, outcome) and ``search.json`` (which workflows each file unblocks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import artifacts
from comfywatchman.download.state import DownloadState, task_id
from comfywatchman.errors import ArtifactError
from comfywatchman.workflow import names

logger = logging.getLogger(__name__)

QUEUE = "download_queue.json"


# A NamedTuple, not a frozen dataclass: making a dataclass costs a process ~0.4 ms (Python 3.11), a NamedTuple a
# tenth of that. Tasks are compared field by field (``t in chosen``) as the dataclass compared them.
class Task(NamedTuple):
    """One download task: the queue's fields, its id, the workflows it unblocks and its recorded state."""

    id: str
    item: dict[str, Any]  # the download_queue.json task, as written by the search stage
    workflows: tuple[str, ...]
    record: dict[str, Any] | None

    @property
    def name(self) -> str:
        return str(self.item["name"])

    @property
    def folder(self) -> str | None:
        folder = self.item["folder"]
        return None if folder is None else str(folder)

    @property
    def outcome(self) -> dict[str, Any] | None:
        return (self.record or {}).get("outcome")


def load(state_dir: Path) -> tuple[list[Task], dict[str, Any] | None]:
    """Return the tasks of the current queue with their state, and the queue document (None before any search).

    Raise ArtifactError when the queue or downloads.json is broken (the message names the file).
    """
    queue = artifacts.read_optional(state_dir / QUEUE, "download_queue")
    if queue is None:
        return [], None
    records = DownloadState(state_dir).read()
    workflows: dict[tuple[str | None, str], list[str]] = {}
    try:
        search = artifacts.read_optional(state_dir / "search.json", "search") or {"results": []}
    except ArtifactError as exc:
        logger.warning("%s; the queue is listed without its workflows", exc)
        search = {"results": []}
    for result in search["results"]:
        workflows[(result["type"], names.lookup_key(result["name"]))] = list(result.get("workflows", []))
    tasks = []
    for item in queue["tasks"]:
        ident = task_id(item["folder"], item["name"], item["url"])
        wanted_by = workflows.get((item["folder"], names.lookup_key(item["name"])), [])
        tasks.append(Task(ident, item, tuple(wanted_by), records.get(ident)))
    return tasks, queue


def select(tasks: list[Task], wanted: list[str]) -> tuple[list[Task], list[str]]:
    """Return the tasks whose id starts with one of ``wanted`` (at least 4 hex digits, one task each), and an
    error line for each id that matches no task or more than one."""
    chosen: list[Task] = []
    errors = []
    for text in wanted:
        prefix = text.strip().lower()
        matches = [t for t in tasks if len(prefix) >= 4 and t.id.startswith(prefix)]
        if len(matches) == 1:
            if matches[0] not in chosen:
                chosen.append(matches[0])
        elif not matches:
            errors.append(f"no download task {text!r} in the queue (see --queue; ids have 12 hex digits)")
        else:
            errors.append(f"{text!r} matches {len(matches)} tasks; give more of the id")
    return chosen, errors
