"""The bench's measured process and its account of where each phase's time went."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import run as bench_run
from comfywatchman import resources

pytestmark = pytest.mark.slow


def test_child_env_drops_the_bytecode_switch_and_the_users_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("COMFYWATCHMAN_HOME", "/somewhere/else")
    env = bench_run.child_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert not any(key.startswith("COMFYWATCHMAN_") for key in env)
    assert env["PYTHONPATH"].split(":")[0] == str(bench_run.REPO / "lib")


def test_stage_seconds_of_a_real_cycle_in_the_order_it_ran_them(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    shutil.copytree(resources.DEMO_COMFYUI_ROOT, root, symlinks=True)
    home = tmp_path / "home"
    bench_run.fresh_home(home)
    seconds, _peak, code = bench_run.timed_process(bench_run.cycle_command(root, home), bench_run.child_env())
    assert code == 0
    spent = bench_run.stage_seconds(home)
    assert list(spent) == ["gate", "cache", "intake", "scan", "search", "verify", "report"]
    assert all(0 <= value <= seconds for value in spent.values())
    # A run file of another cycle (a stage that did not run in the last one) is not counted.
    stale = json.loads((home / "state" / "runs" / "scan.json").read_text(encoding="utf-8"))
    stale["cycle_id"] = "20200101T000000Z-0000"
    (home / "state" / "runs" / "scan.json").write_text(json.dumps(stale), encoding="utf-8")
    assert "scan" not in bench_run.stage_seconds(home)


def test_stage_seconds_without_a_cycle_is_empty(tmp_path: Path) -> None:
    assert bench_run.stage_seconds(tmp_path) == {}


def test_report_stages_prints_the_median_per_stage_and_phase(capsys: pytest.CaptureFixture[str]) -> None:
    stages = {
        "cold": [{"scan": 3.0, "other": 0.5}, {"scan": 1.0, "other": 0.3}, {"scan": 2.0, "other": 0.4}],
        "warm": [{"scan": 0.1, "other": 0.2}],
    }
    bench_run.report_stages(2000, stages)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("2000 workflows: where the time went")
    assert lines[2].split() == ["stage", "cold", "warm", "one", "changed"]
    assert lines[3].split() == ["scan", "2.000", "0.100", "-"]
    assert lines[4].split() == ["other", "0.400", "0.200", "-"]


def test_one_changed_workflow_needs_another_model_file_each_time(tmp_path: Path) -> None:
    from tests.helpers.comfy_tree import ui_node, ui_workflow

    folder = tmp_path / "ComfyUI" / "user" / "default" / "workflows"
    folder.mkdir(parents=True)
    nodes = [ui_node(1, "KSampler", [1, "fixed"]), ui_node(2, "LoraLoader", ["style.safetensors", 1.0, 1.0])]
    (folder / "a.json").write_text(json.dumps(ui_workflow(nodes)), encoding="utf-8")

    def lora() -> str:
        data = json.loads((folder / "a.json").read_text(encoding="utf-8"))
        return str(data["nodes"][1]["widgets_values"][0])

    assert bench_run.touch_one_workflow(tmp_path / "ComfyUI") == folder / "a.json"
    assert lora() == "style-edited.safetensors"
    bench_run.touch_one_workflow(tmp_path / "ComfyUI")
    assert lora() == "style.safetensors"
    (folder / "a.json").write_text(json.dumps(ui_workflow([ui_node(1, "KSampler", [1])])), encoding="utf-8")
    with pytest.raises(RuntimeError, match="no model file name"):
        bench_run.touch_one_workflow(tmp_path / "ComfyUI")
