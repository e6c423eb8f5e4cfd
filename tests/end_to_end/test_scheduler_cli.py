"""The real `comfywatchman --scheduler` process on a temp home and the demo install, --offline."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman import artifacts
from comfywatchman.lock import CycleLock
from tests.helpers.comfy_tree import subprocess_env

pytestmark = pytest.mark.slow


def command(home: Path, *args: str) -> list[str]:
    config = home / "cw.toml"
    if not config.exists():
        # The loop has no --force: its gate is given inputs that let it run on any machine. A CI machine may
        # have booted minutes ago (the awake check would rightly hold the first cycle back) and the GPU is the
        # tests' busy fake, so: no wake grace, no VRAM needed. A poll of an hour means a wait that a stop
        # signal did not cut short lasts an hour.
        config.write_text("[schedule]\nwake_grace_seconds = 0\nmin_vram_gb = 0\nloop_poll_seconds = 3600\n")
    return [sys.executable, "-m", "comfywatchman", "--home", str(home), "--config", str(config), "--offline", *args]


def environment(home: Path) -> dict[str, str]:
    return subprocess_env(home)


def run(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``comfywatchman`` with ``args`` on ``home`` to the end; return what it did."""
    return subprocess.run(
        command(home, *args), env=env or environment(home), capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def scheduler_state(home: Path) -> dict[str, object]:
    try:
        return json.loads((home / "state" / "scheduler.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command(tmp_path, "--scheduler"),
        env=environment(tmp_path),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_scheduler_runs_a_cycle_then_exits_0_at_once_when_sigterm_arrives(
    tmp_path: Path, loop: subprocess.Popen[str]
) -> None:
    wait_for(
        lambda: (
            scheduler_state(tmp_path).get("last_outcome") is not None
            and scheduler_state(tmp_path).get("loop_state") == "waiting"
        )
    )
    state = scheduler_state(tmp_path)
    assert state["last_outcome"] == "success" and state["loop_pid"] == loop.pid
    assert state["last_trigger"] == "scheduler"

    # A second loop on the same home is refused; a cron run now is not blocked (no cycle is running).
    second = run(tmp_path, "--scheduler")
    assert second.returncode == 75 and "another --scheduler loop is running" in second.stderr

    status = run(tmp_path, "--scheduler-status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["loop_running"] is True

    # The loop now sleeps toward the next cycle, two hours on, in slices of loop_poll_seconds (an hour):
    # only a signal that cuts the sleep short ends it within the minute allowed here.
    loop.send_signal(signal.SIGTERM)
    assert loop.wait(timeout=60) == 0
    _, stderr = loop.communicate()
    assert "scheduler: stopped (SIGTERM)" in stderr

    # Every state file is whole and valid.
    final = artifacts.read(tmp_path / "state" / "scheduler.json", "scheduler")
    assert final["loop_state"] == "stopped" and final["loop_pid"] is None
    artifacts.read(tmp_path / "state" / "gate.json", "gate")
    artifacts.read(tmp_path / "state" / "awake.json", "awake")
    records = [json.loads(line) for line in (tmp_path / "state" / "cycles.jsonl").read_text().splitlines()]
    assert [r["trigger"] for r in records] == ["scheduler"]

    shown = run(tmp_path, "--scheduler-status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "scheduler loop: not running" in text and "(success, scheduler)" in text


def test_run_cycle_exits_75_and_records_the_skip_when_another_cycle_holds_the_lock(tmp_path: Path) -> None:
    with CycleLock(tmp_path / "state" / "cycle.lock"):
        done = subprocess.run(
            command(tmp_path, "--run-cycle"),
            env={**environment(tmp_path), "COMFYWATCHMAN_TRIGGER": "cron"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 75, done.stderr
    assert "another cycle is running" in done.stderr
    record = json.loads((tmp_path / "state" / "cycles.jsonl").read_text().splitlines()[-1])
    assert record["trigger"] == "cron" and record["skipped_reason"].startswith("lock: ")
    assert not (tmp_path / "state" / "scheduler.json").exists()  # left to the cycle holding the lock


def test_scheduler_refuses_force_as_bad_usage(tmp_path: Path) -> None:
    done = run(tmp_path, "--scheduler", "--force")
    assert done.returncode == 2 and "--force" in done.stderr


def test_scheduler_status_says_nothing_is_scheduled_on_a_fresh_home(tmp_path: Path) -> None:
    done = run(tmp_path, "--scheduler-status")
    assert "scheduler loop: not running" in done.stdout and "not scheduled" in done.stdout
