"""Crash consistency: SIGKILLs spread over every stage of a cycle on a tree of real workflows (the official
templates plus generated ones), landing by time, after stage ends, inside the atomic writes and inside
intake's append. After each kill every state file is whole and valid and no JSON-lines file has a torn line;
after the next whole cycle no temp file is left, every workflow's content is acknowledged and none twice.

``make test`` runs a handful of kills; the long run (``reliability`` mark, ``make test-reliability``) lands
at least 100 on several hundred workflows and records its figures (tests/helpers/figures.py).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.generate import generate_install
from comfywatchman import artifacts, catalogue
from comfywatchman.stages import ORDER
from comfywatchman.stages.intake import sha256_file
from tests.helpers import figures
from tests.helpers.comfy_tree import subprocess_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc and SIGKILL"),
]

templates_json = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATES = Path(templates_json.__file__).parent / "templates"
NOT_WORKFLOWS = ("index", "fuse_options")


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


@dataclass
class KillRun:
    """A ComfyUI tree, a home folder, and what the kills and checks have seen so far."""

    root: Path
    home: Path
    rng: random.Random
    kills: Counter[str] = field(default_factory=Counter)
    by_stage: Counter[str] = field(default_factory=Counter)
    temp_files_after_kill: int = 0
    recoveries: int = 0
    serial: int = 0
    checked_bytes: dict[Path, int] = field(default_factory=dict)

    @property
    def args(self) -> list[str]:
        cycle = ["--run-cycle", "--force", "--offline", "--comfyui-root", str(self.root)]
        return [sys.executable, "-m", "comfywatchman", *cycle]

    @property
    def workflows(self) -> Path:
        return self.root / "user" / "default" / "workflows"

    @property
    def log(self) -> Path:
        return self.home / "log" / "structured.log"

    @property
    def stderr(self) -> Path:
        return self.home.parent / "stderr.txt"

    def start(self) -> subprocess.Popen[bytes]:
        with open(self.stderr, "wb") as stderr:
            return subprocess.Popen(
                self.args, cwd=self.home, env=subprocess_env(self.home), stdout=subprocess.DEVNULL, stderr=stderr
            )

    def whole_cycle(self) -> None:
        """Run one cycle to its end; assert it ran without a crash."""
        with open(self.stderr, "wb") as stderr:
            code, _, _ = figures.run_measured(
                self.args, cwd=self.home, env=subprocess_env(self.home), stdout=subprocess.DEVNULL, stderr=stderr
            )
        text = self.stderr.read_text(errors="replace")
        assert code in (0, 1) and "Traceback" not in text, f"cycle exited {code}: {text[-2000:]}"

    def change_workflows(self, share: float) -> None:
        """Give a share of the JSON workflows new content (never content they had before: a byte is added),
        add one new workflow and delete another, so intake, scan and report have work to be killed in."""
        files = sorted(self.workflows.rglob("*.json"))
        for path in self.rng.sample(files, max(1, int(len(files) * share))):
            with open(path, "ab") as handle:
                handle.write(b" ")
        self.serial += 1
        source = self.rng.choice(files)
        shutil.copyfile(source, self.workflows / f"added-{self.serial}-{source.name}")
        self.rng.choice(files).unlink()

    def stage_at_kill(self, offset: int) -> str:
        """Return the stage a kill landed in: the one after the last stage that logged its end after byte
        ``offset`` of the structured log (``gate`` before the gate ended: the start-up or the gate itself;
        ``end`` after the report: recording the cycle)."""
        last = None
        with open(self.log, "rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                stage = json.loads(line).get("stage")
                if stage in ORDER:
                    last = stage
        if last is None:
            return "gate"
        following = ORDER.index(last) + 1
        return ORDER[following] if following < len(ORDER) else "end"

    def check_whole(self) -> int:
        """Assert every JSON file of the catalogue under the home reads valid, and every JSON-lines file ends
        with a newline and holds valid lines only (those appended since the last check validated against
        their schema); return how many files were checked."""
        checked = 0
        for path in sorted(p for p in self.home.rglob("*") if p.is_file()):
            item = catalogue.for_relative_path(path.relative_to(self.home).as_posix())
            if item is None or item.schema is None:
                continue
            if item.kind == "json":
                artifacts.read(path, item.schema)
            else:
                data = path.read_bytes()
                assert data == b"" or data.endswith(b"\n"), f"{path}: torn last line"
                start = self.checked_bytes.get(path, 0) if len(data) >= self.checked_bytes.get(path, 0) else 0
                position = 0
                for number, line in enumerate(data.splitlines(keepends=True), start=1):
                    record = json.loads(line)  # a torn line anywhere raises here
                    if position >= start:
                        assert not artifacts.schema_errors(record, item.schema, f"{path}:{number}")
                    position += len(line)
                self.checked_bytes[path] = len(data)
            checked += 1
        return checked

    def temp_files(self) -> list[Path]:
        return [p for p in self.home.rglob("*") if _is_temp(p.name)]

    def check_acknowledgments(self) -> None:
        """Assert every workflow file's content is acknowledged, each (path, content) at most once."""
        records = list(artifacts.read_jsonl(self.home / "state" / "intake_log.jsonl", "intake_log_entry"))
        pairs = Counter((r["path"], r["sha256"]) for r in records)
        twice = [pair for pair, count in pairs.items() if count > 1]
        assert twice == [], f"acknowledged twice: {twice[:3]}"
        missing = [p for p in self.workflows.rglob("*") if p.is_file() and (str(p), sha256_file(p)) not in pairs]
        assert missing == [], f"never acknowledged: {missing[:3]}"

    def recover(self) -> None:
        """Run a whole cycle after kills: nothing left over, nothing lost, nothing acknowledged twice."""
        self.whole_cycle()
        self.check_whole()
        assert self.temp_files() == [], "temp files left after the recovery cycle"
        self.check_acknowledgments()
        self.recoveries += 1
        figures.record("recovery cycles: nothing lost, nothing acknowledged twice, no temp file", True, "all")


def build_run(tmp_path: Path, generated: int, templates: int, seed: int) -> KillRun:
    """Return a KillRun on an install of ``generated`` bench workflows plus ``templates`` official ones (all
    when 0 or more than there are), after one whole cycle."""
    root = tmp_path / "ComfyUI"
    generate_install(root, workflows=generated, models=max(200, generated * 4), seed=seed, processes=1)
    chosen = sorted(p for p in TEMPLATES.glob("*.json") if not p.name.startswith(NOT_WORKFLOWS))
    target = root / "user" / "default" / "workflows" / "templates"
    target.mkdir(parents=True, exist_ok=True)
    for path in chosen[: templates or None]:
        shutil.copyfile(path, target / path.name)
    home = tmp_path / "home"
    home.mkdir()
    run = KillRun(root, home, random.Random(seed))
    run.whole_cycle()
    return run


def _kill(process: subprocess.Popen[bytes]) -> bool:
    """SIGKILL ``process`` if it still runs; return whether it did."""
    if process.poll() is not None:
        return False
    os.kill(process.pid, signal.SIGKILL)
    return True


def kill_after(run: KillRun, process: subprocess.Popen[bytes], delay: float) -> bool:
    """Kill ``delay`` seconds after the start."""
    deadline = time.monotonic() + delay
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
    return _kill(process)


def kill_on_event(run: KillRun, process: subprocess.Popen[bytes], offset: int, stage: str) -> bool:
    """Kill as soon as ``stage`` has logged its end: the kill lands at the start of the next stage."""
    while process.poll() is None:
        with open(run.log, "rb") as handle:
            handle.seek(offset)
            for line in handle.read().decode(errors="replace").splitlines():
                try:
                    if json.loads(line).get("stage") == stage:
                        return _kill(process)
                except ValueError:
                    continue
        time.sleep(0.001)
    return False


def kill_on_temp_file(run: KillRun, process: subprocess.Popen[bytes], prefix: str) -> bool:
    """Kill the moment a temp file whose name starts with ``prefix`` (``.`` for any) shows up beside the
    artifacts: the kill lands inside that atomic write or append."""
    folders = [run.home / "state", run.home / "state" / "runs", run.home / "output" / "reports" / "status"]
    while process.poll() is None:
        for folder in folders:
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            if any(_is_temp(n) and n.startswith(prefix) for n in names):
                return _kill(process)
    return False


Window = tuple[str, float, float]


def kill_once(run: KillRun, strategy: str, window: Window) -> bool:
    """Start a cycle after changing some workflows, kill it by ``strategy`` (``timed``: at a moment within
    ``window``, seconds after the start), and check every file is whole; return whether the kill landed (a
    cycle can end before it: a temp file watched for may come and go between two looks)."""
    run.change_workflows(0.05)
    offset = run.log.stat().st_size
    process = run.start()
    kinds: dict[str, Callable[[], bool]] = {
        "timed": lambda: kill_after(run, process, run.rng.uniform(window[1], window[2])),
        "stage end": lambda: kill_on_event(run, process, offset, run.rng.choice(ORDER[:-1])),
        "atomic write": lambda: kill_on_temp_file(run, process, "."),
        "intake append": lambda: kill_on_temp_file(run, process, ".intake_log.jsonl."),
    }
    killed = kinds[strategy]()
    code, _ = figures.wait_measured(process)
    stderr = run.stderr.read_text(errors="replace")
    if not killed:
        assert code in (0, 1), stderr
        assert "Traceback" not in stderr
        return False
    run.kills[strategy] += 1
    run.by_stage[run.stage_at_kill(offset)] += 1
    run.temp_files_after_kill += len(run.temp_files())
    assert run.check_whole() >= 5
    return True


def measure_cycle(run: KillRun) -> list[Window]:
    """Run one whole cycle after the usual changes; return each stage's window (stage, from, to: seconds
    after the process started), the gate's taking in the start-up, measured from the stage runs' own
    durations. Timed kills are spread over these, so every stage gets its share however short it is."""
    run.change_workflows(0.05)
    started = time.monotonic()
    run.whole_cycle()
    wall = time.monotonic() - started
    durations = []
    for stage in ORDER:
        record = artifacts.read(catalogue.artifact("stage_run").locate(run.home, stage), "stage_run")
        durations.append((stage, float(record["duration_s"])))
    edge = max(0.0, wall - sum(d for _, d in durations))  # interpreter start-up, lock, recording
    windows = []
    for stage, duration in durations:
        windows.append((stage, 0.0 if stage == "gate" else edge, edge + duration))
        edge += duration
    return windows


def processes_mentioning(text: str) -> list[int]:
    """Return the pids of live processes whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            alive = (entry / "stat").read_text().split()[2] != "Z"
            if alive and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return pids


def kill_suite(run: KillRun, plan: list[str], recover_every: int) -> None:
    """Land the kills of ``plan`` (strategies in order), a recovery cycle every ``recover_every`` of them,
    and a last one at the end; record the figures."""
    windows = measure_cycle(run)
    run.recover()
    for number, strategy in enumerate(plan, start=1):
        # A kill that missed (the cycle ended first) is tried again, twice at most: each try is checked alike.
        for _ in range(3):
            if kill_once(run, strategy, windows[number % len(windows)]):
                break
        if number % recover_every == 0:
            run.recover()
    run.recover()
    # No process of a killed cycle (a scan worker) lives on.
    deadline = time.monotonic() + 10
    while processes_mentioning(str(run.root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = processes_mentioning(str(run.root))
    figures.record("processes of killed cycles still alive 10 s later", len(alive))
    assert alive == []
    survived = sum(run.kills.values())
    figures.record("SIGKILLs survived (crash consistency)", survived)
    for strategy, count in sorted(run.kills.items()):
        figures.record(f"  of which {strategy}", count)
    for stage, count in sorted(run.by_stage.items()):
        figures.record(f"  landed in {stage}", count)
    figures.record("temp files left by kills, removed by the next cycle", run.temp_files_after_kill)
    figures.record("workflows in the crash tree (max)", sum(1 for _ in run.workflows.rglob("*.*")), "max")


def test_a_handful_of_kills_leave_every_file_whole_and_nothing_behind(tmp_path: Path) -> None:
    run = build_run(tmp_path, generated=60, templates=40, seed=5)
    plan = ["atomic write", "intake append", "stage end", "timed", "atomic write", "intake append"]
    kill_suite(run, plan, recover_every=3)
    assert run.kills["atomic write"] >= 1
    assert sum(run.kills.values()) >= 4


@pytest.mark.reliability
def test_a_hundred_kills_over_every_stage_leave_every_file_whole_and_nothing_behind(tmp_path: Path) -> None:
    run = build_run(tmp_path, generated=300, templates=0, seed=11)
    # Half by time over the measured cycle, the rest after each stage's end and inside the writes.
    plan = ["timed"] * 60 + ["stage end"] * 25 + ["atomic write"] * 25 + ["intake append"] * 20
    random.Random(11).shuffle(plan)
    kill_suite(run, plan, recover_every=10)
    assert sum(run.kills.values()) >= 100
    assert run.kills["intake append"] >= 10 and run.kills["atomic write"] >= 10
    # Every stage of the cycle was interrupted at least once.
    assert set(ORDER) <= set(run.by_stage), run.by_stage
