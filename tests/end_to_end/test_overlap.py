"""Overlap: cron runs, the --scheduler loop and manual runs started at once on one home, stale locks (their
holder died) and foreign ones (another program holds the file, or wrote garbage in it, or a folder is in its
place). Never two cycles at once, never a crash, 75 for a cycle the lock skipped, every state file whole and
nothing recorded lost.

``make test`` runs one burst and the lock cases; the long run (``reliability``) fires many bursts at a loop
that runs cycles back to back.
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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bench.generate import generate_install
from comfywatchman import artifacts, catalogue
from comfywatchman.lock import CycleLock, probe_held, read_holder
from comfywatchman.stages.intake import sha256_file
from tests.helpers import figures
from tests.helpers.comfy_tree import ComfyTree, subprocess_env, ui_node, ui_workflow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name == "nt", reason="POSIX signals and fcntl locks in the helpers"),
]

# The loop has no --force and cron runs none: their gate is given inputs that let them run on any machine
# under the tests' busy fake GPU (no wake grace, no VRAM needed). The loop runs a cycle every 3 s, so it
# is often running or about to start one when a burst comes.
CONFIG = (
    "[schedule]\nwake_grace_seconds = 0\nmin_vram_gb = 0\nloop_poll_seconds = 3600\n"
    "interval_minutes = 0.05\nretry_minutes = 0.01\n"
)


@dataclass
class Home:
    """A home folder on a generated install, and every process run on it."""

    root: Path
    home: Path
    codes: Counter[tuple[str, int]] = field(default_factory=Counter)

    def command(self, *args: str) -> list[str]:
        config = self.home / "cw.toml"
        base = ["--home", str(self.home), "--config", str(config), "--offline", "--comfyui-root", str(self.root)]
        return [sys.executable, "-m", "comfywatchman", *base, *args]

    def start(self, kind: str) -> subprocess.Popen[bytes]:
        """Start a run of ``kind``: ``cron`` (--run-cycle, COMFYWATCHMAN_TRIGGER=cron), ``manual`` (--run-cycle
        --force), ``scheduler`` (the loop)."""
        args = {"cron": ("--run-cycle",), "manual": ("--run-cycle", "--force"), "scheduler": ("--scheduler",)}[kind]
        env = subprocess_env(self.home, {"COMFYWATCHMAN_TRIGGER": "cron"} if kind == "cron" else {})
        return subprocess.Popen(
            self.command(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.home
        )

    def finish(self, kind: str, process: subprocess.Popen[bytes], timeout: float = 120) -> int:
        """Wait for ``process``; assert it ended without a traceback with 0, 1 or 75; return its code."""
        _, stderr = process.communicate(timeout=timeout)
        text = stderr.decode(errors="replace")
        assert "Traceback" not in text, text
        assert process.returncode in (0, 1, 75), (kind, process.returncode, text)
        if process.returncode == 75 and kind != "scheduler":
            assert "another cycle is running" in text, text
        self.codes[(kind, process.returncode)] += 1
        return process.returncode

    def records(self, name: str, schema: str) -> list[dict[str, object]]:
        return list(artifacts.read_jsonl(self.home / name, schema))

    def start_loop(self, timeout: float = 120) -> subprocess.Popen[bytes]:
        """Start the loop and return it once it holds ``state/scheduler.lock``.

        Until then it does not: a ``--scheduler`` started a moment later (a burst's) can take the lock first
        under load, and the loop this returned would exit 75 while the other ran on, never signalled.
        """
        loop = self.start("scheduler")
        lock = self.home / "state" / "scheduler.lock"
        deadline = time.monotonic() + timeout
        while not (read_holder(lock).get("pid") == loop.pid and probe_held(lock)):
            if loop.poll() is not None:
                stderr = loop.communicate()[1].decode(errors="replace")
                raise AssertionError(f"the loop exited with {loop.returncode} before it held its lock: {stderr}")
            if time.monotonic() > deadline:
                loop.kill()
                loop.wait(timeout=10)
                raise AssertionError(f"the loop did not take {lock} in {timeout:g} s")
            time.sleep(0.02)
        return loop

    def stop_all(self, processes: list[subprocess.Popen[bytes]]) -> None:
        """Kill whichever of ``processes`` still run (a test that failed midway leaves none behind)."""
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def make_home(tmp_path: Path, workflows: int) -> Home:
    """Return a Home on a generated install of ``workflows`` workflows (0: a small hand-made one)."""
    root = tmp_path / "ComfyUI"
    if workflows:
        generate_install(root, workflows=workflows, models=max(400, workflows * 4), seed=7, processes=1)
    else:
        tree = ComfyTree(root)
        tree.model("checkpoints", "here.safetensors")
        tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["here.safetensors"])]))
        tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["missing.safetensors"])]))
    home = tmp_path / "home"
    home.mkdir()
    (home / "cw.toml").write_text(CONFIG)
    return Home(root, home)


def touch_workflows(home: Home, rng: random.Random, count: int) -> None:
    """Give ``count`` workflows content they never had (a byte added), so every cycle has intake work."""
    files = sorted((home.root / "user" / "default" / "workflows").rglob("*.json"))
    for path in rng.sample(files, min(count, len(files))):
        with open(path, "ab") as handle:
            handle.write(b" ")


def check_whole(home: Path) -> None:
    """Assert every artifact under ``home`` reads valid and every JSON-lines file holds whole valid lines."""
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        item = catalogue.for_relative_path(path.relative_to(home).as_posix())
        if item is None or item.schema is None:
            continue
        if item.kind == "json":
            artifacts.read(path, item.schema)
            continue
        text = path.read_text(encoding="utf-8")
        assert text == "" or text.endswith("\n"), path
        for number, line in enumerate(text.splitlines(), start=1):
            assert not artifacts.schema_errors(json.loads(line), item.schema, f"{path}:{number}")


def check_never_two_at_once(home: Path) -> int:
    """Assert no two cycles ran at once; return how many ran (held the lock).

    The structured log is appended in time order by every process. A cycle that held the lock logs its
    stage events between taking and releasing it, so the events of two cycles that overlapped would
    interleave: each running cycle's events must form one unbroken run. (A cycle refused by the lock logs
    one ``lock:`` skip, at any moment: those are left out.)
    """
    events = [
        e
        for e in artifacts.read_jsonl(home / "log" / "structured.log", "structured_log_entry")
        if not str(e["detail"]).startswith("lock:")
    ]
    runs = [e["cycle_id"] for i, e in enumerate(events) if i == 0 or events[i - 1]["cycle_id"] != e["cycle_id"]]
    repeated = [cycle for cycle, count in Counter(runs).items() if count > 1]
    assert repeated == [], f"cycles interleaved in the structured log: {repeated[:3]}"
    return len(runs)


def check_acknowledgments(home: Home) -> None:
    """Assert every workflow's content is acknowledged once: two intakes at once would both acknowledge it."""
    records = home.records("state/intake_log.jsonl", "intake_log_entry")
    pairs = Counter((r["path"], r["sha256"]) for r in records)
    assert [p for p, n in pairs.items() if n > 1] == []
    found = (home.root / "user" / "default" / "workflows").rglob("*")
    files = [p for p in found if p.is_file() and p.suffix in (".json", ".png", ".webp")]
    assert [p for p in files if (str(p), sha256_file(p)) not in pairs] == []


def bursts(home: Home, count: int, rng: random.Random, width: int) -> None:
    """With the loop running, fire ``count`` bursts of ``width`` cron and ``width`` manual runs (and a second
    loop) started together; assert each ran or was refused cleanly and every run is in cycles.jsonl."""
    loop = home.start_loop()
    started = Counter({"cron": 0, "manual": 0})
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for _ in range(count):
            touch_workflows(home, rng, 6)
            kinds = ["cron"] * width + ["manual"] * width + ["scheduler"]
            rng.shuffle(kinds)
            processes = []
            for kind in kinds:
                processes.append((kind, home.start(kind)))
                time.sleep(rng.uniform(0, 0.05))
            for kind, process in processes:
                code = home.finish(kind, process)
                if kind == "scheduler":
                    assert code == 75  # the first loop runs: a second one on the same state folder does not
                else:
                    started[kind] += 1
        assert loop.poll() is None
    except BaseException:
        home.stop_all([process for _, process in processes])  # a burst's loop too: never one left behind
        raise
    finally:
        loop.send_signal(signal.SIGTERM)
    try:
        assert home.finish("scheduler", loop, timeout=120) == 0
    finally:
        home.stop_all([loop])  # never leave a loop behind, whatever failed above
    cycles = home.records("state/cycles.jsonl", "cycle")
    by_trigger = Counter(str(c["trigger"]) for c in cycles)
    # Every run is recorded, skipped ones included: nothing lost when processes append at once.
    assert by_trigger["cron"] == started["cron"] and by_trigger["manual"] == started["manual"]
    assert by_trigger["scheduler"] >= 1
    skipped = [c for c in cycles if str(c["skipped_reason"] or "").startswith("lock:")]
    assert all(c["exit_code"] == 75 for c in skipped)
    assert sum(n for (kind, code), n in home.codes.items() if kind != "scheduler" and code == 75) == sum(
        1 for c in skipped if c["trigger"] != "scheduler"
    )
    check_whole(home.home)
    ran = check_never_two_at_once(home.home)
    done = subprocess.run(home.command("--run-cycle", "--force"), env=subprocess_env(home.home), capture_output=True)
    assert done.returncode in (0, 1), done.stderr
    check_acknowledgments(home)
    figures.record("overlapping runs started (cron, manual, --scheduler)", sum(home.codes.values()))
    figures.record("  of which skipped by the lock (exit 75)", sum(n for (_, c), n in home.codes.items() if c == 75))
    figures.record("  cycles that held the lock, none at once with another", ran)
    for trigger in ("cron", "manual", "scheduler"):
        held = sum(1 for c in cycles if c["trigger"] == trigger and c not in skipped)
        figures.record(f"    of which {trigger}", held)
    figures.record("overlap: nothing lost, never two cycles at once", True, "all")
    assert skipped, "no run was refused by the lock: nothing overlapped"


def test_cron_scheduler_and_manual_runs_at_once_never_overlap(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=120)
    bursts(home, count=2, rng=random.Random(1), width=2)


def test_start_loop_hands_back_only_a_loop_that_holds_the_lock(tmp_path: Path) -> None:
    # Under load a --scheduler started a moment after the loop (a burst's) could take the loop lock first: the
    # loop exited 75, and the burst's one ran on, never signalled, until finish() timed out. Here another
    # holder has the lock first, deterministically: start_loop says so at once instead of returning.
    home = make_home(tmp_path, workflows=0)
    other = CycleLock(home.home / "state" / "scheduler.lock", purpose="scheduler")
    other.acquire()
    try:
        with pytest.raises(AssertionError, match="exited with 75 before it held its lock"):
            home.start_loop()
    finally:
        other.release()
    loop = home.start_loop()
    try:
        second = home.start("scheduler")
        assert home.finish("scheduler", second) == 75
    finally:
        loop.send_signal(signal.SIGTERM)
        try:
            assert home.finish("scheduler", loop) == 0
        finally:
            home.stop_all([loop])


@pytest.mark.reliability
def test_many_bursts_of_cron_scheduler_and_manual_runs_never_overlap(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=300)
    bursts(home, count=25, rng=random.Random(2), width=3)


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.parametrize("lock_name", ["cycle.lock", "scheduler.lock"])
def test_stale_locks_of_a_dead_holder_are_taken_over(tmp_path: Path, lock_name: str) -> None:
    home = make_home(tmp_path, workflows=0)
    state = home.home / "state"
    state.mkdir()
    dead = _dead_pid()
    (state / lock_name).write_text(json.dumps({"pid": dead, "host": "x", "purpose": "cycle", "since": "then"}))
    if lock_name == "cycle.lock":
        # Two runs at once on the stale lock: one takes it over, the other is refused, neither crashes.
        processes = [("manual", home.start("manual")), ("cron", home.start("cron"))]
        codes = sorted(home.finish(kind, process) for kind, process in processes)
        assert codes[0] in (0, 1) and codes[1] in (0, 1, 75)
    else:
        loop = home.start("scheduler")
        deadline = time.monotonic() + 60
        while not any(c["trigger"] == "scheduler" for c in home.records("state/cycles.jsonl", "cycle")):
            assert time.monotonic() < deadline and loop.poll() is None
            time.sleep(0.05)
        loop.send_signal(signal.SIGTERM)
        assert home.finish("scheduler", loop) == 0
    holder = json.loads((state / lock_name).read_text())
    assert holder["pid"] != dead and holder["released"] is True
    check_whole(home.home)


GARBAGE = {
    "binary": b"\x00\xff\xfe garbage \x80",
    "a JSON list": b"[1, 2, 3]",
    "a pid that is text": b'{"pid": "abc"}',
    "a pid that is true": b'{"pid": true, "released": false}',
    "a negative pid": b'{"pid": -5}',
    "empty": b"",
}


@pytest.mark.parametrize("content", GARBAGE.values(), ids=GARBAGE.keys())
def test_a_lock_file_with_garbage_in_it_is_taken_and_rewritten(tmp_path: Path, content: bytes) -> None:
    home = make_home(tmp_path, workflows=0)
    state = home.home / "state"
    state.mkdir()
    (state / "cycle.lock").write_bytes(content)
    assert home.finish("manual", home.start("manual")) in (0, 1)
    assert json.loads((state / "cycle.lock").read_text())["released"] is True
    check_whole(home.home)


def test_a_lock_file_another_program_holds_skips_the_cycle_with_75(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=0)
    state = home.home / "state"
    state.mkdir()
    lock = state / "cycle.lock"
    lock.write_bytes(b"held by some other tool\n")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'a+b'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(120)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        for kind in ("cron", "manual"):
            process = home.start(kind)
            assert home.finish(kind, process) == 75
        assert lock.read_bytes() == b"held by some other tool\n"  # the refused runs leave it as it is
    finally:
        holder.kill()
        holder.wait()
    cycles = home.records("state/cycles.jsonl", "cycle")
    assert [c["exit_code"] for c in cycles] == [75, 75]
    assert home.finish("manual", home.start("manual")) in (0, 1)


def test_a_folder_in_place_of_the_lock_file_fails_with_its_name_and_no_traceback(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=0)
    (home.home / "state" / "cycle.lock").mkdir(parents=True)
    for kind in ("cron", "manual"):
        process = home.start(kind)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 1
        text = stderr.decode()
        assert "Traceback" not in text
        assert f"{home.home / 'state' / 'cycle.lock'}: cannot open the lock file" in text
    cycles = home.records("state/cycles.jsonl", "cycle")
    assert [c["exit_code"] for c in cycles] == [1, 1]
    shutil.rmtree(home.home / "state" / "cycle.lock")
    assert home.finish("manual", home.start("manual")) in (0, 1)


def test_a_folder_in_place_of_the_scheduler_lock_stops_the_loop_with_1_and_no_traceback(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=0)
    (home.home / "state" / "scheduler.lock").mkdir(parents=True)
    process = home.start("scheduler")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Traceback" not in stderr.decode()
    assert f"{home.home / 'state' / 'scheduler.lock'}: cannot open the lock file" in stderr.decode()


def test_a_cycle_lock_held_in_this_process_refuses_every_kind_of_run(tmp_path: Path) -> None:
    home = make_home(tmp_path, workflows=0)
    with CycleLock(home.home / "state" / "cycle.lock"):
        for kind in ("cron", "manual"):
            assert home.finish(kind, home.start(kind)) == 75
    assert [c["skipped_reason"][:5] for c in home.records("state/cycles.jsonl", "cycle")] == ["lock:", "lock:"]
