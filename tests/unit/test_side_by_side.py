"""Cache and intake side by side (cache in a forked child, intake in the cycle's process): the same outcomes,
files and records as one after the other; a child that crashes, is killed or hangs is a failed cache stage
and the cycle goes on. Real forks, real files, the real command in a subprocess."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, catalogue, cycle, fork_rules, side_by_side, stage_runner
from comfywatchman.stages import ORDER, SIDE_BY_SIDE
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.state_manager import StateManager
from tests.fakes.machine import FakeMachine
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="stages run side by side on Linux only")

# Files of the cache and intake stages (the state folder) and of the records of their runs.
STAGE_FILES = (
    "state/model_cache.json",
    "state/custom_nodes_cache.json",
    "state/pack_reads.json",
    "state/intake.json",
    "state/intake_log.jsonl",
    "state/runs/cache.json",
    "state/runs/intake.json",
    "log/structured.log",
)


# Set in the fresh process that runs this module again (see fork_here).
_FRESH_ENV = "COMFYWATCHMAN_TEST_FRESH_PROCESS"
_fresh_outcomes: dict[str, str] = {}


@pytest.fixture
def fork_here(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Return True when this test process may fork, so the test runs here. Else (threads that earlier tests
    left running, a tqdm monitor or a test server's request threads, keep it from forking as they would keep a
    cycle from forking) make sure this test passed in a fresh process running this module, and return False."""
    monkeypatch.delenv(fork_rules.FORK_ENV, raising=False)
    reason = fork_rules.fork_refusal()
    # In the fresh process, a thread an earlier test of this module started may still be ending (an artifact's
    # fsync on a disk the whole suite keeps busy): waited for a while, not taken for one that never ends.
    fresh = os.environ.get(_FRESH_ENV) == "1"
    deadline = time.monotonic() + 10
    while fresh and reason is not None and "threads" in reason and time.monotonic() < deadline:
        time.sleep(0.05)
        reason = fork_rules.fork_refusal()
    if reason is None:
        return True
    if "threads" not in reason:
        pytest.skip(f"no stages side by side on this machine: {reason}")
    threads = ", ".join(sorted(t.name for t in threading.enumerate() if t is not threading.main_thread()))
    assert not fresh, f"a fresh test process cannot fork: {reason} ({threads or 'none of them Python threads'})"
    if not _fresh_outcomes:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(request.path)],
            cwd=request.config.rootpath,
            env={**os.environ, _FRESH_ENV: "1"},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        _fresh_outcomes.update(
            (m[2], m[1]) for m in re.finditer(r"^(PASSED|FAILED|ERROR|SKIPPED) (\S+)", done.stdout, re.M)
        )
        # What went wrong first (the errors, then the failures), else the end of the run.
        errors = done.stdout.find("= ERRORS =")
        failures = done.stdout.find("= FAILURES =")
        start = errors if errors >= 0 else failures
        _fresh_outcomes["output"] = done.stdout[start : start + 4000] if start >= 0 else done.stdout[-4000:]
    assert _fresh_outcomes.get(request.node.nodeid) == "PASSED", _fresh_outcomes["output"]
    return False


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at DEBUG (its ``records`` are those of the test's call)."""
    caplog.set_level(logging.DEBUG)
    yield caplog


def run_pair(ctx: StageContext, fork: bool, **kwargs: Any) -> tuple[list[StageOutcome], tuple[list[str], list[str]]]:
    """Run cache and intake side by side (or not) inside a deferred-sync block; return the outcomes and what
    the block had left to flush before its end."""
    with artifacts.deferred_syncs():
        outcomes = side_by_side.run_side_by_side(SIDE_BY_SIDE, ctx, fork=fork, **kwargs)
        pending = artifacts.deferred_paths()
    return outcomes, pending


def replace_stage(monkeypatch: pytest.MonkeyPatch, name: str, run: Callable[[StageContext], StageOutcome]) -> None:
    monkeypatch.setitem(stage_runner.STAGE_RUNNERS, name, run)


def test_the_side_by_side_stages_follow_the_gate_and_share_no_file() -> None:
    assert ORDER[1 : 1 + len(SIDE_BY_SIDE)] == SIDE_BY_SIDE
    first, second = SIDE_BY_SIDE
    for item in catalogue.ARTIFACTS:
        if item.key in ("stage_run", "structured_log"):
            continue  # written by the recording of each run, which this process does, in stage order
        touched = set(item.writers) | set(item.readers)
        assert not (first in item.writers and second in touched), item.key
        assert not (second in item.writers and first in touched), item.key


def test_side_by_side_gives_the_outcomes_files_and_records_of_one_after_the_other(
    comfy_tree: ComfyTree, tmp_path: Path, fork_here: bool, logs: pytest.LogCaptureFixture
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    seen: dict[bool, Any] = {}
    for fork in (True, False):
        home = tmp_path / f"home-{fork}"
        home.mkdir()
        logs.clear()
        outcomes, pending = run_pair(context(comfy_tree, home, "c1", T0), fork)
        stage_records = [r for r in logs.records if r.name.startswith("comfywatchman.stages.")]
        seen[fork] = {
            "outcomes": [asdict(o) for o in outcomes],
            "files": {name: (home / name).read_bytes() for name in STAGE_FILES},
            "messages": [(r.name, r.levelname, r.getMessage()) for r in stage_records],
            "processes": [r.process for r in stage_records],
            "pending": sorted(p.replace(str(home), "HOME") for p in pending[0] + pending[1]),
        }
    assert [o["stage"] for o in seen[True]["outcomes"]] == list(SIDE_BY_SIDE)
    assert all(o["ok"] for o in seen[True]["outcomes"])
    assert seen[True]["outcomes"] == seen[False]["outcomes"]
    assert seen[True]["files"] == seen[False]["files"]  # one clock, one cycle id: the very same bytes
    assert seen[True]["messages"] == seen[False]["messages"]
    assert [m[0] for m in seen[True]["messages"]] == ["comfywatchman.stages.cache", "comfywatchman.stages.intake"]
    # The cache stage really ran in another process, and its records came back from it.
    assert seen[True]["processes"][0] != os.getpid() and seen[True]["processes"][1] == os.getpid()
    assert seen[False]["processes"] == [os.getpid(), os.getpid()]
    assert seen[True]["pending"] == seen[False]["pending"]


def test_what_the_child_left_to_flush_is_flushed_by_this_process(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    aside = home / "aside"

    def writes_aside(ctx: StageContext) -> StageOutcome:
        artifacts.atomic_write_bytes(aside / "written.bin", b"whole\n")
        with open(aside / "appended.log", "a", encoding="utf-8") as handle:
            handle.write("one line\n")
            handle.flush()
            artifacts.fsync_appended(aside / "appended.log", handle.fileno())
        return StageOutcome("cache", detail=f"written by {os.getpid()}")

    replace_stage(monkeypatch, "cache", writes_aside)
    flushed: list[list[str]] = []
    real_flush = artifacts._flush_all
    monkeypatch.setattr(artifacts, "_flush_all", lambda paths: flushed.append(paths) or real_flush(paths))
    outcomes, pending = run_pair(context(comfy_tree, home, "c1", T0), fork=True)
    assert outcomes[0].ok and outcomes[0].detail != f"written by {os.getpid()}"
    assert str(aside / "appended.log") in pending[0] and str(aside) in pending[1]
    assert str(aside) in flushed[-1] and str(aside / "appended.log") in flushed[-1]
    assert (aside / "written.bin").read_bytes() == b"whole\n"


def test_a_child_killed_by_a_signal_is_a_failed_cache_stage_and_the_cycle_goes_on_and_exits_1(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    ctx = context(comfy_tree, home, "c0", T0)  # writes the config the cycles below read
    machine = FakeMachine(wall=T0)
    first = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
    assert first.exit_code == 0, first.errors
    before = (home / "state" / "model_cache.json").read_bytes()
    parent = os.getpid()

    def killed(ctx: StageContext) -> StageOutcome:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("the cache stage ran in the test's own process")

    replace_stage(monkeypatch, "cache", killed)
    result = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
    assert result.exit_code == 1
    assert len(result.errors) == 1
    killed_line = r"stage cache: its process \(pid \d+\) was killed by signal SIGKILL \(9\) before it finished"
    assert re.fullmatch(killed_line, result.errors[0])
    runs = {name: json.loads((home / "state" / "runs" / f"{name}.json").read_text()) for name in ORDER}
    assert {name: run["cycle_id"] for name, run in runs.items()} == dict.fromkeys(ORDER, result.cycle_id)
    assert runs["cache"]["ok"] is False and runs["cache"]["errors"] == list(result.errors)
    assert all(runs[name]["ok"] for name in ORDER if name != "cache")
    # The caches of the cycle before stay as they were, and the stages after used them.
    assert (home / "state" / "model_cache.json").read_bytes() == before
    last = list(StateManager(home / "state").cycles())[-1]
    assert last["exit_code"] == 1 and last["errors"] == list(result.errors)
    lines = (home / "log" / "structured.log").read_text().splitlines()
    events = [json.loads(line) for line in lines if result.cycle_id in line]
    assert [(e["stage"], e["event"]) for e in events] == [
        ("gate", "finished"),
        ("cache", "failed"),
        *[(name, "finished") for name in ORDER[2:]],
        ("cycle", "failed"),
    ]


def test_a_cycle_collects_the_exit_of_its_child_before_it_ends(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, logs: pytest.LogCaptureFixture
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    ctx = context(comfy_tree, home, "c0", T0)
    machine = FakeMachine(wall=T0)
    result = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
    assert result.exit_code == 0, result.errors
    forked = [re.search(r"stage cache runs in process (\d+)", r.getMessage()) for r in logs.records]
    pids = [int(m.group(1)) for m in forked if m]
    assert len(pids) == 1
    with pytest.raises(ChildProcessError):  # no zombie left: its exit (and CPU time) was collected
        os.waitpid(pids[0], os.WNOHANG)


def test_a_child_that_hangs_is_killed_at_its_deadline_and_the_other_stage_is_kept(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    replace_stage(monkeypatch, "cache", lambda ctx: time.sleep(60) or StageOutcome("cache"))
    started = time.monotonic()
    outcomes, _pending = run_pair(context(comfy_tree, home, "c1", T0), fork=True, timeout_s=0.5)
    assert time.monotonic() - started < 20
    assert not outcomes[0].ok
    hung_line = r"stage cache: its process \(pid (\d+)\) did not finish within 0.5 s and was killed"
    match = re.fullmatch(hung_line, outcomes[0].errors[0])
    assert match
    with pytest.raises(ProcessLookupError):  # killed and waited for: no process, no zombie
        os.kill(int(match.group(1)), 0)
    assert outcomes[1].ok and outcomes[1].counts["workflows"] == 2
    assert json.loads((home / "state" / "runs" / "cache.json").read_text())["errors"] == outcomes[0].errors


def test_a_crash_in_the_child_reads_as_the_same_crash_one_after_the_other(
    comfy_tree: ComfyTree,
    tmp_path: Path,
    fork_here: bool,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)

    def crashes(ctx: StageContext) -> StageOutcome:
        logging.getLogger("comfywatchman.stages.cache").warning("about to fail on %s", Path("models"))
        raise RuntimeError("no such thing")

    replace_stage(monkeypatch, "cache", crashes)
    seen = {}
    for fork in (True, False):
        home = tmp_path / f"home-{fork}"
        home.mkdir()
        logs.clear()
        outcomes, _pending = run_pair(context(comfy_tree, home, "c1", T0), fork)
        warned = [r for r in logs.records if r.levelno == logging.WARNING]
        tracebacks = [r for r in logs.records if r.getMessage().startswith("stage cache crashed:\nTraceback")]
        seen[fork] = [asdict(o) for o in outcomes], [r.getMessage() for r in warned], len(tracebacks)
    assert seen[True] == seen[False]
    assert seen[True][0][0]["errors"] == [
        "stage cache crashed: RuntimeError: no such thing (run with --verbose for the traceback)"
    ]
    assert seen[True][1] == ["about to fail on models"] and seen[True][2] == 1


def test_the_child_never_returns_into_the_code_that_forked_it(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    replace_stage(monkeypatch, "cache", lambda ctx: sys.exit(3))
    returned = home / "returned.txt"
    outcomes, _pending = run_pair(context(comfy_tree, home, "c1", T0), fork=True)
    with open(returned, "a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    time.sleep(0.3)  # a child that came back here would have written its line by now
    assert returned.read_text().split() == [str(os.getpid())]
    assert re.fullmatch(r"stage cache: its process \(pid \d+\) failed: SystemExit: 3", outcomes[0].errors[0])
    assert outcomes[1].ok


def test_with_another_thread_running_the_stages_run_one_after_the_other(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, logs: pytest.LogCaptureFixture
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="a test's server")
    thread.start()
    try:
        assert fork_rules.fork_refusal() == "2 threads are running"
        outcomes, _pending = run_pair(context(comfy_tree, home, "c1", T0), fork=True)
    finally:
        stop.set()
        thread.join()
    assert [o.ok for o in outcomes] == [True, True]
    assert {r.process for r in logs.records} == {os.getpid()}
    assert any(r.getMessage().endswith("one after the other: 2 threads are running") for r in logs.records)


# The parts of a home's files that differ from one cycle to the next whatever the stages did.
_CYCLE_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_NUMBERS = re.compile(r'("(?:duration_s|awake_s|suspended_s|pid)": ?|held by pid |ok in )[\d.]+')
_OWN_HASH = re.compile(r'("(?:scan_sha256|\w*fingerprint)": ?)"[0-9a-f]{64}"')  # of the home's own files


def _normalized(home: Path) -> dict[str, str]:
    """Return the text of each JSON, JSON-lines and Markdown file of the catalogue in ``home``, times, durations,
    pids and cycle ids masked. Left out: the lock and the suspend clocks (of the machine, not the stages), and
    the caches that fingerprint files of the home itself (binary packs, ``*_inputs.json``: sizes and mtimes)."""
    found = {}
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        relative = path.relative_to(home).as_posix()
        item = catalogue.for_relative_path(relative)
        if item is None or item.kind == "binary" or item.key in ("awake",) or relative.endswith("_inputs.json"):
            continue
        text = path.read_text(encoding="utf-8").replace(str(home), "HOME")
        text = _OWN_HASH.sub(r'\1"H"', _NUMBERS.sub(r"\1N", _TIME.sub("T", _CYCLE_ID.sub("ID", text))))
        found[relative] = text
    return found


def test_the_command_gives_the_same_files_and_log_order_side_by_side_or_one_after_the_other(
    comfy_tree: ComfyTree, tmp_path: Path
) -> None:
    make_install(comfy_tree)
    seen = {}
    for env in ({}, {fork_rules.FORK_ENV: "0"}):
        home = tmp_path / f"home-{len(env)}"
        home.mkdir()
        args = ["--run-cycle", "--force", "--offline", "--verbose", "--comfyui-root", str(comfy_tree.root)]
        done = run_cli(*args, home=home, env=env)
        assert done.returncode == 0, done.stderr
        log = [json.loads(line)["stage"] for line in (home / "log" / "structured.log").read_text().splitlines()]
        assert log == [*ORDER, "cycle"]
        stages = [m.group(1) for m in re.finditer(r"INFO: (cache|intake): ", done.stderr)]
        assert stages == ["cache", "intake"]
        forked = re.search(r"stage cache runs in process \d+ beside this one", done.stderr)
        assert bool(forked) == (not env and fork_rules.cpus() >= 2), done.stderr
        runs = [json.loads((home / "state" / "runs" / f"{name}.json").read_text()) for name in SIDE_BY_SIDE]
        assert runs[0]["started_at"] <= runs[1]["started_at"]  # in stage order, as the bench reads them
        seen[bool(env)] = _normalized(home)
    assert seen[True].keys() == seen[False].keys()
    assert "state/model_cache.json" in seen[True] and "output/reports/status/master_status.md" in seen[True]
    for name, text in seen[True].items():
        assert text == seen[False][name], name


def test_meanwhile_gets_the_second_stage_outcome_only_where_this_process_waits_for_the_child(
    comfy_tree: ComfyTree, tmp_path: Path, fork_here: bool
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    for fork in (True, False):
        home = tmp_path / f"home-{fork}"
        home.mkdir()
        seen: list[tuple[str, int]] = []

        def note(outcome: StageOutcome, seen: list[tuple[str, int]] = seen) -> None:
            seen.append((outcome.stage, os.getpid()))

        run_pair(context(comfy_tree, home, "c1", T0), fork, meanwhile=note)
        assert seen == ([("intake", os.getpid())] if fork else [])


def test_a_cycle_imports_the_later_stages_runners_in_the_wait_and_their_work_only_when_intake_saw_a_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[tuple[str, ...], bool]] = []
    monkeypatch.setattr(cycle.prewarm, "import_for", lambda stages, work: asked.append((tuple(stages), work)) or [])
    later = ("scan", "search", "verify", "report")
    for counts, work in (
        ({"workflows": 3, "new": 0, "changed": 0, "removed": 0}, False),
        ({"workflows": 3, "new": 1, "changed": 0, "removed": 0}, True),
        ({"workflows": 3, "new": 0, "changed": 0, "removed": 1}, True),
        ({}, False),  # intake failed before counting
    ):
        asked.clear()
        outcome = StageOutcome("intake")
        outcome.counts = counts
        cycle.prewarm_after(outcome)
        assert asked == [(later, work)]


@pytest.mark.parametrize("model_added", [False, True], ids=["install-as-it-was", "model-added"])
def test_a_scan_run_ahead_of_the_cache_child_leaves_the_files_of_a_scan_run_after_it(
    comfy_tree: ComfyTree,
    tmp_path: Path,
    fork_here: bool,
    monkeypatch: pytest.MonkeyPatch,
    logs: pytest.LogCaptureFixture,
    model_added: bool,
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    make_install(comfy_tree)
    parent, real_cache = os.getpid(), stage_runner.STAGE_RUNNERS["cache"]

    def slow_cache(ctx: StageContext) -> StageOutcome:
        if os.getpid() != parent:
            time.sleep(0.5)  # still walking the install when intake is done: the scan runs ahead
        return real_cache(ctx)

    replace_stage(monkeypatch, "cache", slow_cache)
    homes = {fork: tmp_path / f"home-{fork}" for fork in (True, False)}

    def cycle_in(fork: bool) -> None:
        monkeypatch.setenv(fork_rules.FORK_ENV, "1" if fork else "0")
        homes[fork].mkdir(exist_ok=True)
        ctx = context(comfy_tree, homes[fork], "c0", T0)
        machine = FakeMachine(wall=T0)
        result = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
        assert result.exit_code == 0, result.errors

    for fork in homes:
        cycle_in(fork)
    first = [r.getMessage() for r in logs.records]
    assert not any("runs ahead" in m for m in first)  # a first cycle has no model cache to scan against
    # A workflow now needs another LoRA; where the model is added too, the cache rewrites the model cache.
    lora = ui_node(2, "LoraLoader", ["other_lora.safetensors", 1, 1])
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]), lora]))
    if model_added:
        comfy_tree.model("loras", "other_lora.safetensors")
    logs.clear()
    for fork in homes:
        cycle_in(fork)
    messages = [r.getMessage() for r in logs.records]
    for name in cycle.AHEAD:
        assert sum(f"stage {name} runs ahead, while stage cache runs in its process" in m for m in messages) == 1
    again = r"stages scan, search, verify run again: stage cache rewrote \S+model_cache.json"
    assert any(re.search(again, m) for m in messages) == model_added
    # Recorded in the order of the stages, from this process, once.
    events = [json.loads(line) for line in (homes[True] / "log" / "structured.log").read_text().splitlines()]
    assert [e["stage"] for e in events[-len(ORDER) - 1 :]] == [*ORDER, "cycle"]
    forked, one_after_the_other = _normalized(homes[True]), _normalized(homes[False])
    assert forked.keys() == one_after_the_other.keys()
    if model_added:
        # The scan run again takes the changed workflow's requirements from the store the run ahead filled, where
        # one after the other parses it: what it did differs ("reused", its counts), not what it found.
        # scan_lines.json places each line of scan.json by its bytes, which the flag's length moves.
        forked, one_after_the_other = (
            {k: _work_masked(v) for k, v in files.items() if k != "state/scan_lines.json"}
            for files in (forked, one_after_the_other)
        )
    for name, text in forked.items():
        assert text == one_after_the_other[name], name
    scan = json.loads((homes[True] / "state" / "scan.json").read_text())
    b = next(w for w in scan["workflows"] if w["workflow"].endswith("b.json"))
    missing = [m["name"] for m in b["models"] if m["status"] == "missing"]
    assert missing == ([] if model_added else ["other_lora.safetensors"])


_SCAN_WORK = re.compile(r'("reused": ?)(true|false|\d+)|("parsed": ?)\d+|\(\d+ parsed, \d+ unchanged\)')


def _work_masked(text: str) -> str:
    """Return ``text`` with what the scan did to make its entries (parsed, or taken from the store) masked."""
    return _SCAN_WORK.sub("WORK", text)


def test_scan_search_and_verify_run_ahead_only_when_few_workflows_are_new_or_changed() -> None:
    from comfywatchman.stages.scan import MIN_PARALLEL

    def intake(**counts: int) -> StageOutcome:
        outcome = StageOutcome("intake")
        outcome.counts = counts
        return outcome

    # The stages after intake that read nothing of the cycle's records (the report lists this cycle's runs).
    assert cycle.AHEAD == ORDER[3:-1] == ("scan", "search", "verify")
    stage_runs = catalogue.artifact("stage_run")
    assert not set(cycle.AHEAD) & set(stage_runs.readers)
    assert cycle.ahead_of_cache(intake(workflows=5000, new=0, changed=1, removed=0)) == cycle.AHEAD
    assert cycle.ahead_of_cache(intake(workflows=5000, new=0, changed=0, removed=40)) == cycle.AHEAD
    assert cycle.ahead_of_cache(intake(workflows=5000, new=MIN_PARALLEL - 1, changed=1, removed=0)) == ()
    assert cycle.ahead_of_cache(intake()) == ()  # intake failed before counting


def test_a_scan_module_that_cannot_load_runs_nothing_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "comfywatchman.stages.scan", None)  # its import raises ImportError
    outcome = StageOutcome("intake")
    outcome.counts = {"workflows": 5, "new": 0, "changed": 1, "removed": 0}
    assert cycle.ahead_of_cache(outcome) == ()


def _beside(
    monkeypatch: pytest.MonkeyPatch, ctx: StageContext, search_writes: str, verify: Callable[[], None] | None = None
) -> list[StageOutcome] | None:
    """Run a fake search (writing ``search_writes`` to the basis file) beside a fake verify that says which
    process ran it (after ``verify``, when given); return what ``run_beside`` gave."""
    basis_file = ctx.state_dir / "basis.txt"
    basis_file.parent.mkdir(parents=True, exist_ok=True)
    basis_file.write_text("as it was", encoding="utf-8")

    def search(ctx: StageContext) -> StageOutcome:
        time.sleep(0.1)  # the verify in the child reads the basis file before it is written anew, or after
        basis_file.write_text(search_writes, encoding="utf-8")
        return StageOutcome("search", detail=f"by {os.getpid()}")

    def verify_stage(ctx: StageContext) -> StageOutcome:
        if verify is not None:
            verify()
        logging.getLogger("comfywatchman.stages.verify").info("verify: read %s", basis_file.read_text())
        return StageOutcome("verify", detail=f"by {os.getpid()}")

    replace_stage(monkeypatch, "search", search)
    replace_stage(monkeypatch, "verify", verify_stage)
    with artifacts.deferred_syncs():
        return side_by_side.run_beside("search", "verify", ctx, lambda: basis_file.read_text())


def test_a_run_beside_stands_when_the_first_stage_left_its_basis_as_it_was_else_it_runs_again(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch, logs: pytest.LogCaptureFixture
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    ctx = context(comfy_tree, home, "c1", T0)
    here = f"by {os.getpid()}"
    outcomes = _beside(monkeypatch, ctx, "as it was")
    assert outcomes is not None and [o.stage for o in outcomes] == ["search", "verify"]
    assert outcomes[0].detail == here and outcomes[1].detail != here  # the verify's run in the child stood
    runs = {name: json.loads((home / "state" / "runs" / f"{name}.json").read_text()) for name in ("search", "verify")}
    assert runs["verify"]["detail"] == outcomes[1].detail and runs["search"]["detail"] == here
    assert [r.getMessage() for r in logs.records if r.name == "comfywatchman.stages.verify"] == [
        "verify: read as it was"
    ]
    logs.clear()
    outcomes = _beside(monkeypatch, ctx, "other answers")  # the search changed what the verify reads
    assert outcomes is not None and [o.detail for o in outcomes] == [here, here]
    assert any(r.getMessage() == "stage verify runs again: stage search changed what it reads" for r in logs.records)
    # Its records are those of the run that stands: the one made after the search, not the dropped one.
    assert [r.getMessage() for r in logs.records if r.name == "comfywatchman.stages.verify"] == [
        "verify: read other answers"
    ]


def test_a_run_beside_whose_process_dies_runs_again_here_and_none_runs_beside_where_no_fork_is_allowed(
    comfy_tree: ComfyTree, home: Path, fork_here: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not fork_here:
        return  # passed in a fresh process
    ctx = context(comfy_tree, home, "c1", T0)
    parent = os.getpid()

    def die_in_child() -> None:
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    outcomes = _beside(monkeypatch, ctx, "as it was", die_in_child)
    assert outcomes is not None and [o.detail for o in outcomes] == [f"by {parent}"] * 2
    assert all(o.ok for o in outcomes)
    calls = []

    def failing_basis() -> str:  # the sum after the search cannot be made: the run beside is not kept
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("no sum")
        return "as it was"

    with artifacts.deferred_syncs():
        outcomes = side_by_side.run_beside("search", "verify", ctx, failing_basis)
    assert outcomes is not None and [o.detail for o in outcomes] == [f"by {parent}"] * 2  # no crash: run again
    monkeypatch.setenv(fork_rules.FORK_ENV, "0")
    assert _beside(monkeypatch, ctx, "as it was") is None


def test_the_verify_runs_beside_the_search_only_when_few_workflows_are_new_or_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from comfywatchman.stages.scan import MIN_PARALLEL

    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(side_by_side, "run_beside", lambda first, second, ctx, basis: asked.append((first, second)))
    for new, wanted in ((1, True), (MIN_PARALLEL, False)):
        asked.clear()
        intake = StageOutcome("intake")
        intake.counts = {"workflows": 5000, "new": new, "changed": 0, "removed": 0}
        cycle.verify_beside_search(None, [intake])  # type: ignore[arg-type]
        assert asked == ([("search", "verify")] if wanted else [])
    asked.clear()
    assert cycle.verify_beside_search(None, [StageOutcome("intake")]) is None  # type: ignore[arg-type]
    assert asked == []


def test_a_cycle_after_a_change_gives_the_same_files_with_the_verify_beside_the_search_or_after_it(
    comfy_tree: ComfyTree, tmp_path: Path
) -> None:
    make_install(comfy_tree)
    seen = {}
    for env in ({}, {fork_rules.FORK_ENV: "0"}):
        home = tmp_path / f"home-{len(env)}"
        home.mkdir()
        args = ["--run-cycle", "--force", "--offline", "--verbose", "--comfyui-root", str(comfy_tree.root)]
        assert run_cli(*args, home=home, env=env).returncode == 0
    lora = ui_node(2, "LoraLoader", ["another_lora.safetensors", 1, 1])
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]), lora]))
    for env in ({}, {fork_rules.FORK_ENV: "0"}):
        home = tmp_path / f"home-{len(env)}"
        done = run_cli(*args, home=home, env=env)
        assert done.returncode == 0, done.stderr
        beside = re.search(r"stage verify runs in process \d+ beside this one, which runs stage search", done.stderr)
        assert bool(beside) == (not env and fork_rules.cpus() >= 2), done.stderr
        assert "stage verify runs again" not in done.stderr  # the new LoRA is NOT_SEARCHED offline: none FOUND
        log = [json.loads(line)["stage"] for line in (home / "log" / "structured.log").read_text().splitlines()]
        assert log[-len(ORDER) - 1 :] == [*ORDER, "cycle"]
        seen[bool(env)] = _normalized(home)
    assert seen[True].keys() == seen[False].keys()
    for name, text in seen[True].items():
        assert text == seen[False][name], name
    verify = json.loads((tmp_path / "home-0" / "state" / "verify.json").read_text())
    assert verify["counts"] == json.loads((tmp_path / "home-1" / "state" / "verify.json").read_text())["counts"]
