"""The queue as a person reads it (``--queue``): one block per task, its size in words when unknown."""

from __future__ import annotations

from pathlib import Path

from comfywatchman.download import review
from comfywatchman.download.paths import Target
from comfywatchman.download.policy import Decision
from comfywatchman.download.state import task_id
from comfywatchman.download.tasks import Task


def _task(name: str, size: int | None) -> Task:
    url = f"https://example.org/{name}"
    item = {"name": name, "folder": "loras", "target_path": None, "url": url, "sha256": None, "size": size,
            "source": "declared", "evidence": "declared", "status": "pending_review", "requires_review": True,
            "blocks_workflows": 1}  # fmt: skip
    return Task(task_id("loras", name, url), item, ("w.json",), None)


def test_each_task_says_its_size_or_that_it_is_unknown() -> None:
    waiting = Decision(False, "waits for review")
    planned = [
        (_task(name, size), waiting, Target(Path("/c/models/loras"), name))
        for name, size in (("known.safetensors", 2_500_000_000), ("unknown.safetensors", None))
    ]
    text = review.as_text(planned, [])
    assert "    size:     2.5 GB" in text
    assert "    size:     unknown" in text and "size unknown" not in text
