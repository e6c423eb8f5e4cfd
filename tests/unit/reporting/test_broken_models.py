"""The header check of the installed safetensors files, run in a process of its own beside the report."""

from __future__ import annotations

import logging
import struct
import subprocess
from pathlib import Path

import orjson
import pytest

from comfywatchman import artifacts, cycle
from comfywatchman.download.safetensors import installed_broken
from comfywatchman.reporting import broken_models
from comfywatchman.stages import report as report_stage
from tests.fakes.machine import FakeMachine
from tests.helpers.comfy_tree import ComfyTree
from tests.helpers.model_files import safetensors_bytes
from tests.unit.stages.test_reuse import T0, context, make_install


def _state_with_models(tmp_path: Path) -> Path:
    """Return a state folder whose model_cache.json lists a good, a cut and a broken safetensors file, a file
    that is gone, and one that is not safetensors."""
    folder = tmp_path / "models" / "loras"
    (folder / "sdxl").mkdir(parents=True)
    (folder / "good.safetensors").write_bytes(safetensors_bytes(64))
    (folder / "sdxl" / "cut.safetensors").write_bytes(safetensors_bytes(64)[:-3])
    (folder / "bad.sft").write_bytes(struct.pack("<Q", 4) + b"nope")
    (folder / "other.ckpt").write_bytes(b"12")
    names = ("good.safetensors", "sdxl/cut.safetensors", "bad.sft", "other.ckpt", "gone.safetensors")
    cache = {
        "comfyui_root": str(tmp_path),
        "demo": False,
        "generated_at": "2026-01-01T00:00:00+00:00",
        "extra_model_paths": [],
        "problems": [],
        "file_count": len(names),
        "folders": {"loras": {"paths": [str(folder)], "files": [{"dir": 0, "name": n, "size": 1} for n in names]}},
    }
    state = tmp_path / "state"
    state.mkdir()
    artifacts.write(state / "model_cache.json", cache, "model_cache")
    return state


def test_the_child_process_finds_what_the_report_finds_itself(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    here = installed_broken(state)
    assert {b["name"] for b in here} == {"sdxl/cut.safetensors", "bad.sft", "gone.safetensors"}
    with broken_models.Check(state) as check:
        assert check._child is not None  # it did start a process
        assert check._answer() == here
    assert broken_models.Check(state).findings() == (here, [])
    assert broken_models.Check(state, start=False).findings() == (here, [])


@pytest.mark.parametrize("python", ["/bin/false", "/nonexistent/python3"])
def test_a_child_that_gives_no_answer_leaves_the_check_to_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python: str
) -> None:
    state = _state_with_models(tmp_path)
    # A process that fails, or one that cannot start: the report checks the files itself.
    monkeypatch.setattr(broken_models.sys, "executable", python)
    with broken_models.Check(state) as check:
        assert check.findings() == (installed_broken(state), []) and installed_broken(state) != []


def test_the_child_answer_is_not_used_without_a_valid_model_cache(tmp_path: Path) -> None:
    # The child parses model_cache.json without the schemas: the report's own read of it decides.
    state = _state_with_models(tmp_path)
    cache = state / "model_cache.json"
    document = orjson.loads(cache.read_bytes())
    document["walk_limits"] = [{"folder": "loras", "path": "x", "reason": "depth"}]
    del document["file_count"]
    cache.write_bytes(orjson.dumps(document))
    with broken_models.Check(state) as check:
        assert check.findings() == ([], [])
    cache.unlink()
    with broken_models.Check(state) as check:
        assert check.findings() == ([], [])


def test_a_report_that_leaves_early_ends_the_child(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    check = broken_models.Check(state)
    child = check._child
    assert child is not None
    with check:
        pass
    assert child.returncode is not None and check._child is None


@pytest.mark.parametrize(
    "out",
    [b"", b"not json", b"{}", b'[{"folder": "x"}]', b'[{"folder":"a","name":"b","path":"c","reason":1}]'],
)
def test_an_answer_that_is_not_the_list_is_refused(out: bytes) -> None:
    assert broken_models._parsed(out) is None


def test_an_answer_that_is_the_list_is_taken() -> None:
    found = [{"folder": "a", "name": "b", "path": "c", "reason": "truncated: x"}]
    assert broken_models._parsed(orjson.dumps(found)) == found


def test_only_a_large_install_is_worth_a_process(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    assert not broken_models.worth_a_process(state)  # five files: checked in the report itself
    assert not broken_models.worth_a_process(tmp_path / "nowhere")
    (state / "model_cache.json").write_bytes(b" " * broken_models.WORTH_A_PROCESS)
    assert broken_models.worth_a_process(state)


def test_an_installed_package_is_not_put_first_on_the_child_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From a site folder the child finds the package itself; from anywhere else it is told where it is.
    seen: list[dict[str, str]] = []
    monkeypatch.setattr(subprocess, "Popen", lambda command, **kw: seen.append(kw["env"]))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    root = str(Path(broken_models.comfywatchman.__file__).resolve().parent.parent)
    broken_models._spawn(tmp_path / "model_cache.json")
    monkeypatch.setattr(broken_models, "_site_folders", lambda: {root})
    broken_models._spawn(tmp_path / "model_cache.json")
    assert seen[0]["PYTHONPATH"] == root and "PYTHONPATH" not in seen[1]


def test_a_check_started_early_is_the_one_the_report_takes(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    assert broken_models.start_early(state)
    early = broken_models._EARLY[state / "model_cache.json"][1]
    with broken_models.Check(state) as check:
        assert check._child is early  # no second process
        assert check.findings() == (installed_broken(state), [])
    assert not broken_models._EARLY


def test_a_check_started_for_another_model_cache_is_ended_and_started_again(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    assert broken_models.start_early(state)
    early = broken_models._EARLY[state / "model_cache.json"][1]
    # The model cache is written again after it started (a download put a file in place): not its answer.
    cache = state / "model_cache.json"
    document = orjson.loads(cache.read_bytes())
    document["folders"]["loras"]["files"] = document["folders"]["loras"]["files"][:1]
    artifacts.write(cache, document, "model_cache")
    with broken_models.Check(state) as check:
        assert check._child is not early and early.returncode is not None
        assert check.findings() == ([], [])  # good.safetensors alone now: nothing broken


def test_a_check_started_early_that_no_report_takes_ends_with_the_cycle(tmp_path: Path) -> None:
    state = _state_with_models(tmp_path)
    assert broken_models.start_early(state)
    early = broken_models._EARLY[state / "model_cache.json"][1]
    broken_models.end_early()
    assert early.returncode is not None and not broken_models._EARLY
    assert not broken_models.start_early(tmp_path / "nowhere")  # no model cache: nothing to check


def test_a_cycle_starts_the_check_before_its_search_and_its_report_takes_it(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make_install(comfy_tree)
    comfy_tree.model("loras", "cut.safetensors").write_bytes(safetensors_bytes(64)[:-3])
    monkeypatch.setattr(broken_models, "WORTH_A_PROCESS", 1)  # these few files: checked in a process of their own
    spawned: list[Path] = []
    real_spawn = broken_models._spawn
    monkeypatch.setattr(broken_models, "_spawn", lambda path: spawned.append(path) or real_spawn(path))
    ctx = context(comfy_tree, home, "c0", T0)
    machine = FakeMachine(wall=T0)
    for _ in range(2):  # a first cycle checks every file; the next keeps the findings (same model cache)
        result = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
        assert result.exit_code == 0, result.errors
    assert spawned == [home / "state" / "model_cache.json"]  # one process, started early, taken by the report
    messages = [r.getMessage() for r in caplog.records]
    started = messages.index("the header check of every installed model file started before the search")
    assert started < next(i for i, m in enumerate(messages) if m.startswith("search: "))
    report = orjson.loads((home / "output" / "reports" / "status" / "master_status.json").read_bytes())
    assert [b["name"] for b in report["broken_models"]] == ["cut.safetensors"]
    assert not broken_models._EARLY


def test_a_header_check_that_cannot_start_early_leaves_the_cycle_as_it_was(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make_install(comfy_tree)

    def broken(state: Path) -> bool:
        raise OSError(28, "No space left on device", str(state / "model_cache.json"))

    monkeypatch.setattr(report_stage, "start_header_check", broken)
    ctx = context(comfy_tree, home, "c0", T0)
    machine = FakeMachine(wall=T0)
    result = cycle.guarded_cycle(ctx.config, clock=machine.now, machine=machine.machine(), force=True)
    assert result.exit_code == 0, result.errors
    said = "the header check not started before the search: " + str(home / "state" / "model_cache.json")
    assert said + ": No space left on device" in [r.getMessage() for r in caplog.records]
    assert (home / "output" / "reports" / "status" / "master_status.json").exists()
