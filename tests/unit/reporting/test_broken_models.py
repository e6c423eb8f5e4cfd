"""The header check of the installed safetensors files, run in a process of its own beside the report."""

from __future__ import annotations

import struct
import subprocess
from pathlib import Path

import orjson
import pytest

from comfywatchman import artifacts
from comfywatchman.download.safetensors import installed_broken
from comfywatchman.reporting import broken_models
from tests.helpers.model_files import safetensors_bytes


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
