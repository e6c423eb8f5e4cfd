"""A cycle killed at any moment (SIGKILL: no cleanup runs) leaves every state file whole, and the next cycle
runs to the end without acknowledging anything twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.generate import generate_install
from comfywatchman import artifacts, catalogue
from tests.helpers.comfy_tree import run_cli, subprocess_env

pytestmark = pytest.mark.slow


def _check_whole(home: Path) -> int:
    """Assert every JSON and JSON-lines file of the catalogue under ``home`` parses and validates; return
    how many files were checked."""
    checked = 0
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        item = catalogue.for_relative_path(path.relative_to(home).as_posix())
        if item is None or item.schema is None:
            continue
        if item.kind == "json":
            artifacts.read(path, item.schema)
        else:
            text = path.read_text()
            # Appends go through a temp file and a rename (a SIGKILL can split one long write()): whole lines.
            assert text == "" or text.endswith("\n"), path
            for line in text.splitlines():
                assert not artifacts.schema_errors(json.loads(line), item.schema, str(path))
        checked += 1
    return checked


# The stage whose end triggers the kill, in turn: the kill lands in the stage after it.
KILL_AFTER = ("gate", "cache", "intake", "scan", "search")


def _wait_for_event(log: Path, offset: int, stage: str, process: subprocess.Popen[bytes]) -> bool:
    """Wait until ``stage`` has logged its end in ``log`` after byte ``offset``; return True then, False when
    the process ended first."""
    while process.poll() is None:
        with open(log, "rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if event.get("stage") == stage:
                    return True
        time.sleep(0.002)
    return False


def _processes_mentioning(text: str) -> list[int]:
    """Return the pids of live processes whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (
                text in (entry / "cmdline").read_bytes().decode(errors="replace")
                and (entry / "stat").read_text().split()[2] != "Z"
            ):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc to find orphaned workers")
def test_killed_cycles_leave_every_state_file_whole(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    generate_install(root, workflows=240, models=2000, seed=3, processes=1)
    home = tmp_path / "home"
    home.mkdir()
    args = ["--run-cycle", "--force", "--offline", "--comfyui-root", str(root)]
    assert run_cli(*args, home=home).returncode in (0, 1)
    log = home / "log" / "structured.log"
    kills = 0
    for step in range(8):
        # Touch some workflows so every cycle has intake, scan and report work to be killed in.
        for index, workflow in enumerate(sorted(root.glob("user/default/workflows/**/*.json"))):
            if index % 8 == step:
                workflow.write_text(workflow.read_text().replace('"version"', ' "version"', 1))
        # Killed right after a stage has recorded its end, so in the next stage's work: the kill points are
        # events of the cycle, not fractions of a time measured beforehand (which a faster or slower
        # machine, or a warm cache, would shift out of the cycle).
        after = KILL_AFTER[step % len(KILL_AFTER)]
        offset = log.stat().st_size
        process = subprocess.Popen(
            [sys.executable, "-m", "comfywatchman", *args],
            cwd=home,
            env=subprocess_env(home),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _wait_for_event(log, offset, after, process):
            os.kill(process.pid, signal.SIGKILL)
            kills += 1
        process.wait()
        assert _check_whole(home) >= 5
    assert kills >= 4  # most runs really were killed midway
    # The scan's worker processes of a killed cycle exit too, instead of living on (and holding the lock).
    deadline = time.monotonic() + 5
    while _processes_mentioning(str(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_mentioning(str(root)) == []
    logged = (home / "state" / "intake_log.jsonl").read_text().count("\n")
    final = run_cli(*args, home=home)
    assert final.returncode in (0, 1), final.stderr
    assert "Traceback" not in final.stderr
    _check_whole(home)
    # Whatever the kills interrupted, each workflow content is acknowledged at most once.
    records = list(artifacts.read_jsonl(home / "state" / "intake_log.jsonl", "intake_log_entry"))
    pairs = [(r["path"], r["sha256"]) for r in records]
    assert len(pairs) == len(set(pairs))
    assert len(records) >= logged
