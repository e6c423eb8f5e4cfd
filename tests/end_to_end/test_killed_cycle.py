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

from comfywatchman import artifacts
from tests.helpers.comfy_tree import REPO, run_cli

pytestmark = pytest.mark.slow

sys.path.insert(0, str(REPO / "bench"))
from generate import generate_install  # noqa: E402

# Every JSON file a cycle writes, by the schema it must satisfy.
SCHEMAS = {
    "gate.json": "gate",
    "model_cache.json": "model_cache",
    "custom_nodes_cache.json": "custom_nodes_cache",
    "intake.json": "intake",
    "scan.json": "scan",
    "scan_inputs.json": "scan_inputs",
    "search.json": "search",
    "search_cache.json": "search_cache",
    "download_queue.json": "download_queue",
    "scheduler.json": "scheduler",
    "report_history.json": "report_history",
    "awake.json": "awake",
    "master_status.json": "master_status",
}
JSONL = {"intake_log.jsonl": "intake_log_entry", "cycles.jsonl": "cycle"}


def _check_whole(home: Path) -> int:
    """Assert every state and report file parses and validates; return how many files were checked."""
    checked = 0
    for path in [*home.glob("state/*"), *home.glob("state/runs/*"), *home.glob("output/reports/status/*")]:
        if path.parent.name == "runs":
            artifacts.read(path, "stage_run")
        elif path.name in SCHEMAS:
            artifacts.read(path, SCHEMAS[path.name])
        elif path.name in JSONL:
            text = path.read_text()
            lines = text.splitlines()
            # A SIGKILL cannot split one write() to a regular file: there is never a torn last line.
            assert text == "" or text.endswith("\n"), path
            for line in lines:
                assert not artifacts.schema_errors(json.loads(line), JSONL[path.name], str(path))
        else:
            continue
        checked += 1
    return checked


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
    args = ["--run-cycle", "--offline", "--comfyui-root", str(root)]
    # How long an undisturbed cold cycle takes here, to spread the kills over it.
    started = time.monotonic()
    assert run_cli(*args, home=home).returncode in (0, 1)
    span = time.monotonic() - started
    kills = 0
    for step in range(8):
        # Touch some workflows so every cycle has intake, scan and report work to be killed in.
        for index, workflow in enumerate(sorted(root.glob("user/default/workflows/**/*.json"))):
            if index % 8 == step:
                workflow.write_text(workflow.read_text().replace('"version"', ' "version"', 1))
        process = subprocess.Popen(
            [sys.executable, "-m", "comfywatchman", *args],
            cwd=home,
            env={**os.environ, "COMFYWATCHMAN_HOME": str(home)},  # the home, else the user's data folder
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(span * (0.1 + 0.8 * step / 7))
        if process.poll() is None:
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
