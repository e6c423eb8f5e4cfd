"""The awake check's clock arithmetic: resumes, reboots and platforms that cannot tell."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from comfywatchman import awake
from comfywatchman.awake import AwakeTracker, ClockReading, observe

NOW = datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc)


def reading(awake_s: float, suspended_s: float | None, boot_id: str | None = "b1") -> ClockReading:
    return ClockReading(awake_s, suspended_s, boot_id, "linux")


def recorded(
    awake_s: float, suspended_s: float | None, boot_id: str | None = "b1", resumed: float | None = 0.0
) -> dict[str, object]:
    return observe(reading(awake_s, suspended_s, boot_id), None, NOW).record | {"resumed_at_awake_s": resumed}


def test_observe_knows_no_resume_when_nothing_was_recorded() -> None:
    obs = observe(reading(100.0, 0.0), None, NOW)
    assert obs.resumed_at_awake_s is None
    assert obs.changed and not obs.new_resume
    assert awake.awake_for(reading(100.0, 0.0), obs) is None


def test_observe_notices_a_resume_when_the_suspended_total_grew() -> None:
    obs = observe(reading(5000.0, 6 * 3600.0), recorded(4000.0, 0.0), NOW)
    assert obs.new_resume and obs.changed
    assert obs.slept_s == 6 * 3600.0
    assert obs.resumed_at_awake_s == 5000.0  # taken to be now: the safe side
    assert obs.record["resumed_at_awake_s"] == 5000.0


def test_observe_keeps_the_recorded_resume_when_nothing_changed() -> None:
    previous = recorded(4000.0, 60.0, resumed=3900.0)
    obs = observe(reading(4500.0, 60.4), previous, NOW)
    assert not obs.new_resume and not obs.changed  # clock jitter below the tolerance is not a suspend
    assert obs.resumed_at_awake_s == 3900.0
    assert awake.awake_for(reading(4500.0, 60.4), obs) == 600.0


def test_observe_treats_a_new_boot_id_as_a_boot() -> None:
    obs = observe(reading(9000.0, 0.0, "b2"), recorded(4000.0, 50.0, "b1", resumed=None), NOW)
    assert obs.new_resume and obs.resumed_at_awake_s == 0.0


def test_observe_treats_clocks_going_backwards_as_a_reboot_when_there_is_no_boot_id() -> None:
    assert observe(reading(30.0, 0.0, None), recorded(4000.0, 0.0, None), NOW).resumed_at_awake_s == 0.0
    obs = observe(reading(9000.0, 10.0, None), recorded(4000.0, 500.0, None, resumed=None), NOW)
    assert obs.new_resume and obs.resumed_at_awake_s == 0.0


def test_observe_knows_nothing_where_the_platform_cannot_tell_suspend() -> None:
    obs = observe(ClockReading(100.0, None, None, "sunos5"), None, NOW)
    assert obs.resumed_at_awake_s is None
    assert awake.awake_for(ClockReading(100.0, None, None, "sunos5"), obs) is None


def test_tracker_writes_awake_json_only_when_the_facts_change(tmp_path: Path) -> None:
    clocks = {"r": reading(100.0, 0.0)}
    tracker = AwakeTracker(tmp_path, reader=lambda: clocks["r"])
    tracker.observe(NOW)
    first = (tmp_path / "awake.json").read_text()
    clocks["r"] = reading(200.0, 0.0)
    tracker.observe(NOW)
    assert (tmp_path / "awake.json").read_text() == first
    clocks["r"] = reading(300.0, 3600.0)
    _, obs = tracker.observe(NOW)
    assert obs.new_resume
    assert json.loads((tmp_path / "awake.json").read_text())["resumed_at_awake_s"] == 300.0


def test_tracker_starts_afresh_when_awake_json_is_broken(tmp_path: Path) -> None:
    (tmp_path / "awake.json").write_text("{torn")
    _, obs = AwakeTracker(tmp_path, reader=lambda: reading(50.0, 0.0)).observe(NOW)
    assert obs.resumed_at_awake_s is None
    assert json.loads((tmp_path / "awake.json").read_text())["awake_s"] == 50.0


@pytest.mark.real_machine
def test_read_clocks_reports_suspend_time_on_linux() -> None:
    clocks = awake.read_clocks()
    assert clocks.awake_s > 0
    if sys.platform.startswith("linux"):
        assert clocks.suspended_s is not None and clocks.suspended_s >= 0
        assert clocks.boot_id
