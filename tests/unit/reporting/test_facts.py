"""When the report says the next search runs: scheduler.json's next_run_at, else one interval from now."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from comfywatchman import artifacts
from comfywatchman.reporting import facts

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _scheduler(state: Path, next_run_at: str | None) -> None:
    state.mkdir(exist_ok=True)
    document = {
        "next_run_at": next_run_at,
        "last_run_at": None,
        "last_outcome": None,
        "last_skip_reason": None,
        "pid": None,
    }
    (state / "scheduler.json").write_text(json.dumps(document))


def test_next_cycle_is_schedulers_next_run_when_still_ahead(tmp_path: Path) -> None:
    _scheduler(tmp_path, "2026-11-30T13:30:00+00:00")
    assert facts.next_cycle_at(tmp_path, NOW, 120) == "2026-11-30T13:30:00+00:00"


def test_next_cycle_is_one_interval_away_when_the_recorded_time_has_passed(tmp_path: Path) -> None:
    # Inside a cycle scheduler.json still holds the due time that started it.
    _scheduler(tmp_path, "2026-11-30T11:59:00+00:00")
    assert facts.next_cycle_at(tmp_path, NOW, 120) == "2026-11-30T14:00:00+00:00"


def test_next_cycle_without_scheduler_file_or_with_a_broken_one(tmp_path: Path) -> None:
    assert facts.next_cycle_at(tmp_path, NOW, 60) == "2026-11-30T13:00:00+00:00"
    (tmp_path / "scheduler.json").write_text("{not json")
    assert facts.next_cycle_at(tmp_path, NOW, 60) == "2026-11-30T13:00:00+00:00"


def test_comfyui_python_is_found_in_its_venv(tmp_path: Path) -> None:
    assert facts.comfyui_python(tmp_path) is None
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert facts.comfyui_python(tmp_path) == str(python.resolve())


def queue(tmp_path: Path, names: list[str]) -> None:
    """Write state/download_queue.json (through a temp file and a rename, as the search does) for ``names``."""
    tasks = [
        {
            "name": name,
            "folder": "loras",
            "target_path": f"/c/models/loras/{name}",
            "url": f"https://example.org/{name}",
            "sha256": None,
            "size": None,
            "source": "huggingface",
            "evidence": "exact_filename",
            "status": "pending_review",
            "requires_review": True,
            "blocks_workflows": 1,
        }
        for name in names
    ]
    document = {"cycle_id": "c1", "generated_at": "2026-12-01T04:00:00+00:00", "tasks": tasks}
    artifacts.write(tmp_path / "download_queue.json", document, "download_queue")


def test_download_targets_are_read_once_while_the_queue_is_the_same_file(tmp_path: Path) -> None:
    queue(tmp_path, ["a.safetensors"])
    first = facts.download_targets(tmp_path)
    assert first == {("loras", "a.safetensors"): "/c/models/loras/a.safetensors"}
    assert facts.download_targets(tmp_path) is first  # the file as it was read: not read again
    queue(tmp_path, ["b.safetensors"])  # written again (a new file): read again
    assert facts.download_targets(tmp_path) == {("loras", "b.safetensors"): "/c/models/loras/b.safetensors"}
    (tmp_path / "download_queue.json").unlink()
    assert facts.download_targets(tmp_path) == {}
