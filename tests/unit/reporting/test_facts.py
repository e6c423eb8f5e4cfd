"""When the report says the next search runs: scheduler.json's next_run_at, else one interval from now."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

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
