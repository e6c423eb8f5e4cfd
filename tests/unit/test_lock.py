"""The cycle lock: one holder at a time, the holder named, a dead holder's lock taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman.errors import LockHeldError
from comfywatchman.lock import CycleLock, probe_held, read_holder


def test_acquire_refuses_naming_the_holder_when_the_lock_is_held(tmp_path: Path) -> None:
    path = tmp_path / "state" / "cycle.lock"
    with CycleLock(path) as first:
        assert first.held
        with pytest.raises(LockHeldError) as caught:
            CycleLock(path).acquire()
        assert caught.value.pid == os.getpid()
        assert "another cycle is running" in str(caught.value)
    assert not first.held


def test_release_marks_the_file_and_frees_the_lock_when_done(tmp_path: Path) -> None:
    path = tmp_path / "cycle.lock"
    lock = CycleLock(path)
    lock.acquire()
    lock.release()
    lock.release()  # idempotent
    assert read_holder(path)["released"] is True
    with CycleLock(path) as again:
        assert again.took_over_from is None


def test_acquire_takes_over_when_the_holder_died(tmp_path: Path) -> None:
    path = tmp_path / "cycle.lock"
    # A holder killed mid-cycle leaves its record without "released"; the kernel freed the flock.
    code = (
        "import os, pathlib; from comfywatchman.lock import CycleLock; "
        f"CycleLock(pathlib.Path({str(path)!r})).acquire(); os._exit(9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False)
    dead = read_holder(path)["pid"]
    with CycleLock(path) as lock:
        assert lock.took_over_from == dead
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_probe_held_tells_a_held_lock_from_a_free_one(tmp_path: Path) -> None:
    path = tmp_path / "scheduler.lock"
    assert not probe_held(path)
    with CycleLock(path):
        before = path.read_text()
        assert probe_held(path)
        assert path.read_text() == before  # probing never writes
    assert not probe_held(path)
