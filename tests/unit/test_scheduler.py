"""The --scheduler loop and the guarded cycle, on a fake machine whose time moves only when the loop sleeps."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, awake, cycle, schedule_status, scheduler, stage_runner
from comfywatchman.awake import AwakeTracker, ClockReading
from comfywatchman.config import Config
from comfywatchman.cycle import CycleResult
from comfywatchman.lock import CycleLock
from comfywatchman.scheduler import SchedulerLoop, SignalWaiter
from comfywatchman.stages import ORDER
from comfywatchman.stages.context import StageOutcome
from comfywatchman.state_manager import StateManager
from tests.fakes.machine import SCHEDULE, START, FakeMachine, FakeNvml
from tests.helpers.config import config_with

HOUR = 3600.0


def make_config(home: Path, **changes: Any) -> Config:
    return config_with(home, {"schedule": {**SCHEDULE, **changes}}, comfyui_root=home, offline=True)


@pytest.fixture
def stub_stages(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[..., StageOutcome]]:
    """Replace the five stages after the gate by no-ops (the gate stays real) and return the table."""
    for name in ORDER[1:]:
        monkeypatch.setitem(stage_runner.STAGE_RUNNERS, name, lambda ctx, _n=name: StageOutcome(_n))
    return stage_runner.STAGE_RUNNERS


def make_loop(
    home: Path, machine: FakeMachine, hours: float, config: Config | None = None, **kwargs: Any
) -> SchedulerLoop:
    config = config or make_config(home)
    waiter = SignalWaiter(sleep=kwargs.pop("sleep", machine.sleep))
    machine.stop_at = START + timedelta(hours=hours)
    machine.on_stop = lambda: waiter.request_stop("end of test")
    fake = machine.machine(kwargs.pop("nvml", None))
    return SchedulerLoop(config, clock=machine.now, machine=fake, waiter=waiter, pid=4242, **kwargs)


def cycles(home: Path) -> list[dict[str, Any]]:
    return list(StateManager(home / "state").cycles())


def started_hours(records: list[dict[str, Any]]) -> list[float]:
    return [(datetime.fromisoformat(r["started_at"]) - START).total_seconds() / HOUR for r in records]


def test_run_runs_at_once_then_every_interval_when_nothing_is_recorded(tmp_path: Path, stub_stages: Any) -> None:
    machine = FakeMachine()
    assert make_loop(tmp_path, machine, hours=9.9).run() == 0
    records = cycles(tmp_path)
    assert started_hours(records) == [0, 2, 4, 6, 8]
    assert all(r["success"] and r["trigger"] == "scheduler" and "catch_up" not in r for r in records)
    state = artifacts.read(tmp_path / "state" / "scheduler.json", "scheduler")
    assert state["loop_state"] == "stopped" and state["loop_pid"] is None
    assert state["next_run_at"] == (START + timedelta(hours=10)).isoformat()
    assert max(machine.slept) <= SCHEDULE["loop_poll_seconds"]  # waits in slices, to notice suspends


def test_run_waits_for_the_recorded_next_run_when_it_is_ahead(tmp_path: Path, stub_stages: Any) -> None:
    StateManager(tmp_path / "state").update_scheduler(
        START, next_run_at=(START + timedelta(minutes=30)).isoformat(), next_run_reason="interval"
    )
    make_loop(tmp_path, FakeMachine(), hours=1).run()
    assert started_hours(cycles(tmp_path)) == [0.5]


def test_run_runs_exactly_one_catch_up_cycle_after_six_hours_of_suspend(tmp_path: Path, stub_stages: Any) -> None:
    machine = FakeMachine(suspends={3600.0 + HOUR: 6 * HOUR})  # asleep from 09:00 to 15:00
    make_loop(tmp_path, machine, hours=8.9).run()
    records = cycles(tmp_path)
    hours = started_hours(records)
    assert len(records) == 2, hours  # the first cycle, then one catch-up: not one per missed interval
    assert hours[0] == 0
    catch_up = records[1]
    assert catch_up["catch_up"] is True and catch_up["success"]
    woke = START + timedelta(hours=7)
    delay = (datetime.fromisoformat(catch_up["started_at"]) - woke).total_seconds()
    assert 300 <= delay <= 300 + 2 * SCHEDULE["loop_poll_seconds"]  # after wake_grace_seconds, not at once
    gate = artifacts.read(tmp_path / "state" / "gate.json", "gate")
    assert gate["verdict"] == "run" and gate["checks"][0]["detail"].startswith("awake for 5 min")


def test_run_runs_one_cycle_when_the_wall_clock_jumps_forward(tmp_path: Path, stub_stages: Any) -> None:
    machine = FakeMachine()
    jumped = []

    def sleep(seconds: float) -> None:
        machine.sleep(seconds)
        if not jumped and machine.wall >= START + timedelta(minutes=30):
            jumped.append(True)
            machine.jump_clock(5 * HOUR)

    make_loop(tmp_path, machine, hours=6.9, sleep=sleep).run()
    records = cycles(tmp_path)
    assert len(records) == 2 and records[1]["catch_up"] is True
    assert started_hours(records)[1] == pytest.approx(5.5, abs=0.02)  # no suspend, so no wake grace


def test_run_retries_after_retry_minutes_when_the_gate_skips(tmp_path: Path, stub_stages: Any) -> None:
    probes = [FakeNvml.with_free(1.0), FakeNvml.with_free(20.0)]
    nvml = lambda: probes.pop(0) if len(probes) > 1 else probes[0]  # noqa: E731
    make_loop(tmp_path, FakeMachine(), hours=2.5, nvml=nvml).run()
    records = cycles(tmp_path)
    assert started_hours(records) == [0, 0.25, 2.25]
    assert records[0]["exit_code"] == 75 and records[0]["skipped_reason"].startswith("vram: GPU 0")
    assert [r["success"] for r in records] == [False, True, True]


def raising_first(config: Any, machine: FakeMachine) -> Any:
    """Return a loop's cycle function whose first call raises and whose later calls run a real guarded cycle
    on the test's machine."""
    calls: list[bool] = []

    def one_cycle(catch_up: bool) -> CycleResult:
        calls.append(catch_up)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return cycle.guarded_cycle(config, clock=machine.now, machine=machine.machine(), trigger="scheduler")

    return one_cycle


def test_run_records_a_raising_cycle_and_runs_the_next(tmp_path: Path, stub_stages: Any) -> None:
    config = make_config(tmp_path)
    machine = FakeMachine()
    one_cycle = raising_first(config, machine)

    make_loop(tmp_path, machine, hours=3, config=config, cycle=one_cycle).run()
    records = cycles(tmp_path)
    assert [r["exit_code"] for r in records] == [1, 0]
    assert records[0]["errors"] == ["cycle crashed: RuntimeError: boom"]
    assert started_hours(records) == [0, 2]
    log = [json.loads(line) for line in (tmp_path / "log" / "structured.log").read_text().splitlines()]
    assert any(e["event"] == "failed" and "boom" in e["detail"] for e in log)


def test_run_records_a_raising_cycle_on_a_machine_that_booted_a_minute_ago(
    tmp_path: Path, stub_stages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real clocks of a CI runner that booted a minute ago (another boot, 60 s awake). A cycle that read
    # them instead of the test's machine would take it for a reboot within the wake grace and skip (75).
    monkeypatch.setattr(awake, "read_clocks", lambda: ClockReading(60.0, 0.0, "ci-runner-boot", "linux"))
    config = make_config(tmp_path)
    machine = FakeMachine()
    one_cycle = raising_first(config, machine)

    make_loop(tmp_path, machine, hours=5, config=config, cycle=one_cycle).run()
    assert [r["exit_code"] for r in cycles(tmp_path)] == [1, 0, 0]


def test_run_never_overlaps_a_cron_cycle_when_both_want_to_run(
    tmp_path: Path, stub_stages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path)
    machine = FakeMachine()
    cron_codes: list[int] = []

    def scan_while_cron_fires(ctx: Any) -> StageOutcome:
        # cron fires while the loop's cycle is in its scan stage: it must be refused by the same lock.
        cron_codes.append(cycle.run_cycle(config, clock=machine.now, machine=machine.machine(), trigger="cron"))
        return StageOutcome("scan")

    monkeypatch.setitem(stage_runner.STAGE_RUNNERS, "scan", scan_while_cron_fires)
    make_loop(tmp_path, machine, hours=1, config=config).run()
    assert cron_codes == [75]
    records = cycles(tmp_path)
    cron = next(r for r in records if r["trigger"] == "cron")
    assert cron["skipped_reason"].startswith("lock: ") and "another cycle is running" in cron["skipped_reason"]
    loop_record = next(r for r in records if r["trigger"] == "scheduler")
    assert loop_record["success"]
    # The refused cron run did not overwrite the outcome of the cycle that held the lock.
    assert StateManager(config.state_dir).read_scheduler()["last_outcome"] == "success"


def test_run_retries_when_a_cron_cycle_holds_the_lock(tmp_path: Path, stub_stages: Any) -> None:
    config = make_config(tmp_path)
    machine = FakeMachine()
    cron = CycleLock(config.state_dir / "cycle.lock")
    cron.acquire()

    def sleep(seconds: float) -> None:
        machine.sleep(seconds)
        cron.release()  # the cron cycle ends while the loop waits for its retry

    try:
        make_loop(tmp_path, machine, hours=1, config=config, sleep=sleep).run()
    finally:
        cron.release()
    records = cycles(tmp_path)
    assert [r["exit_code"] for r in records] == [75, 0]
    assert started_hours(records) == [0, 0.25]


def test_run_waits_the_grace_when_started_right_after_a_reboot(tmp_path: Path, stub_stages: Any) -> None:
    earlier_boot = FakeMachine(awake_s=90_000.0, boot_id="boot-0")
    AwakeTracker(tmp_path / "state", reader=earlier_boot.reading).observe(START - timedelta(days=1))
    make_loop(tmp_path, FakeMachine(awake_s=20.0), hours=1).run()
    assert started_hours(cycles(tmp_path)) == [pytest.approx(280 / HOUR)]


def test_due_at_reschedules_one_interval_on_when_the_clock_went_back(tmp_path: Path) -> None:
    loop = make_loop(tmp_path, FakeMachine(), hours=1)
    recorded = {"next_run_at": (START + timedelta(days=3)).isoformat(), "next_run_reason": "interval"}
    assert loop.due_at(START, recorded) == (START + timedelta(hours=2), "clock_back")
    assert loop.due_at(START, None) == (START, "start")
    recorded["next_run_at"] = (START - timedelta(hours=5)).isoformat()
    assert loop.due_at(START, recorded) == (START, "catch_up")
    recorded["next_run_at"] = (START + timedelta(minutes=5)).isoformat()
    assert loop.due_at(START, recorded) == (START + timedelta(minutes=5), "interval")


def test_wait_ends_at_once_when_sigterm_arrives_during_the_sleep(tmp_path: Path) -> None:
    sleeping = threading.Event()
    slept_to_the_end: list[float] = []

    def sleep(seconds: float) -> None:
        sleeping.set()
        time.sleep(seconds)
        slept_to_the_end.append(seconds)  # reached only if the signal did not cut the sleep short

    waiter = SignalWaiter(sleep)
    waiter.install()
    # The signal is sent once the sleep has begun, whatever the machine's speed.
    sender = threading.Thread(target=lambda: sleeping.wait(30) and os.kill(os.getpid(), signal.SIGTERM))
    try:
        sender.start()
        assert waiter.wait(60.0) is True
        assert slept_to_the_end == []
        assert waiter.signal_name == "SIGTERM"
        assert waiter.wait(60.0) is True  # stays stopped, returns at once
        assert slept_to_the_end == []
    finally:
        sender.join()
        waiter.uninstall()


def test_run_loop_refuses_a_second_loop_on_the_same_state(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with scheduler.loop_lock_for(config):
        assert scheduler.run_loop(config, max_cycles=0) == 75


def test_run_loop_stops_cleanly_when_no_cycle_is_allowed(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert scheduler.run_loop(config, max_cycles=0) == 0
    assert StateManager(config.state_dir).read_scheduler()["loop_state"] == "stopped"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers put back


def test_describe_status_reports_the_loop_and_the_next_run(tmp_path: Path, stub_stages: Any) -> None:
    config = make_config(tmp_path)
    machine = FakeMachine()
    make_loop(tmp_path, machine, hours=1, config=config).run()
    status = schedule_status.describe_status(config, START + timedelta(hours=1))
    assert status["loop_running"] is False and status["due_in_s"] == 3600
    text = schedule_status.format_status(status)
    assert "not running (last one stopped at" in text and "in 1 h 00 min" in text and "success, scheduler" in text
    with scheduler.loop_lock_for(config):
        assert schedule_status.describe_status(config, START)["loop_running"] is True


def test_record_outcome_retries_only_after_a_skip(tmp_path: Path) -> None:
    state = StateManager(tmp_path)
    assert (
        state.record_outcome(START, "skipped", "vram", 120, 15, 1)["next_run_at"]
        == (START + timedelta(minutes=15)).isoformat()
    )
    failed = state.record_outcome(START, "failed", None, 120, 15, 1, error="scan: x")
    assert failed["next_run_at"] == (START + timedelta(hours=2)).isoformat() and failed["last_error"] == "scan: x"


def test_trigger_from_env_accepts_cron_only_when_set() -> None:
    assert cycle.trigger_from_env({"COMFYWATCHMAN_TRIGGER": "cron"}) == "cron"
    assert cycle.trigger_from_env({"COMFYWATCHMAN_TRIGGER": "bogus"}) == "manual"
    assert cycle.trigger_from_env({}) == "manual"


def test_a_cycle_that_cannot_record_itself_says_so_and_fails_without_a_traceback(
    tmp_path: Path, stub_stages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(self: StateManager, record: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device", str(self.cycles_path))

    monkeypatch.setattr(StateManager, "record_cycle", full_disk)
    machine = FakeMachine()
    result = cycle.guarded_cycle(make_config(tmp_path), clock=machine.now, machine=machine.machine(), force=True)
    assert result.exit_code == 1
    assert result.errors == (
        f"cannot record the cycle: {tmp_path / 'state' / 'cycles.jsonl'}: No space left on device",
    )
    recorded = json.loads((tmp_path / "state" / "scheduler.json").read_text(encoding="utf-8"))
    assert recorded["last_outcome"] == "failed" and recorded["last_error"] == result.errors[0]
