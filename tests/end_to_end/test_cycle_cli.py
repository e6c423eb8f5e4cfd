"""The real CLI in a subprocess on temporary ComfyUI trees: what a user sees, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman import artifacts
from comfywatchman.lock import CycleLock
from tests.helpers.comfy_tree import REPO, ComfyTree, run_cli, subprocess_env, ui_node, ui_workflow

pytestmark = pytest.mark.slow


def _report(home: Path) -> dict:
    return artifacts.read(home / "output" / "reports" / "status" / "master_status.json", "master_status")


def _by_workflow(report: dict) -> dict[str, dict]:
    return {w["workflow"]: w for w in report["workflows"]}


def test_run_cycle_reports_demo_install_and_second_cycle_changes_nothing(home: Path) -> None:
    first = run_cli("--run-cycle", "--force", "--offline", home=home)
    assert first.returncode == 0, first.stderr
    assert "using the demo" in first.stderr
    assert "demo install" in first.stdout
    report = _report(home)
    assert report["demo"] is True
    assert report["summary"]["workflows"] >= 5
    assert (home / "output" / "reports" / "status" / "master_status.md").read_text().startswith("# ComfyUI readiness")
    caches = [home / "state" / "model_cache.json", home / "state" / "custom_nodes_cache.json"]
    mtimes = [p.stat().st_mtime_ns for p in caches]
    log_lines = (home / "state" / "intake_log.jsonl").read_text().count("\n")

    second = run_cli("--run-cycle", "--force", "--offline", home=home)
    assert second.returncode == 0, second.stderr
    assert [p.stat().st_mtime_ns for p in caches] == mtimes
    assert (home / "state" / "intake_log.jsonl").read_text().count("\n") == log_lines
    assert "0 new, 0 changed" in second.stderr
    cycles = list(artifacts.read_jsonl(home / "state" / "cycles.jsonl", "cycle"))
    assert [c["success"] for c in cycles] == [True, True]


def test_run_cycle_finds_models_added_by_extra_model_paths(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "sd" / "XL").mkdir(parents=True)
    (shared / "sd" / "XL" / "juggernaut.safetensors").write_bytes(b"")
    (shared / "more-loras").mkdir()
    (shared / "more-loras" / "detail.safetensors").write_bytes(b"")
    (shared / "first-vae").mkdir()
    (comfy_tree.root / "extra_model_paths.yaml").write_text(
        "a111:\n"
        f"  base_path: {shared}\n"
        "  checkpoints: sd\n"
        "  loras: |\n"
        "    more-loras\n"
        "    missing-folder\n"
        "desktop:\n"
        f"  base_path: {shared}\n"
        "  is_default: true\n"
        "  vae: first-vae\n"
        "  unet: unet-legacy\n"
    )
    comfy_tree.workflow(
        "uses_extra.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["XL\\juggernaut.safetensors"]),
                ui_node(2, "LoraLoader", ["detail.safetensors", 1.0, 1.0]),
                ui_node(3, "VAELoader", ["absent_vae.safetensors"]),
            ]
        ),
    )
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    assert result.returncode == 0, result.stderr
    report = _report(home)
    entry = _by_workflow(report)["uses_extra.json"]
    assert [m["name"] for m in entry["missing_models"]] == ["absent_vae.safetensors"]
    assert entry["missing_models"][0]["folder"] == "vae"
    assert report["model_dirs"]["vae"][0] == str(shared / "first-vae")  # is_default paths come first
    cache = json.loads((home / "state" / "model_cache.json").read_text())
    assert str(shared / "unet-legacy") in cache["folders"]["diffusion_models"]["paths"]


def test_run_cycle_reports_disabled_pack_and_missing_node(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.pack("GoodPack", ["GoodNode"], version="2.1.0")
    comfy_tree.pack("OldPack.disabled", ["OldNode"])
    (comfy_tree.root / "custom_nodes" / ".disabled").mkdir()
    comfy_tree.pack(".disabled/HiddenPack", ["HiddenNode"])
    comfy_tree.workflow(
        "nodes.json",
        ui_workflow(
            [
                ui_node(1, "GoodNode", []),
                ui_node(2, "OldNode", []),
                ui_node(3, "HiddenNode", []),
                ui_node(4, "KSampler", [1, "fixed", 20, 8, "euler", "normal", 1.0]),
                ui_node(5, "Note", ["hi"]),
                ui_node(6, "NoSuchNodeAnywhere", []),
            ]
        ),
    )
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    assert result.returncode == 0, result.stderr
    nodes = {n["class_type"]: n for n in _by_workflow(_report(home))["nodes.json"]["missing_nodes"]}
    assert set(nodes) == {"OldNode", "HiddenNode", "NoSuchNodeAnywhere"}
    assert nodes["OldNode"]["state"] == "disabled"
    assert nodes["HiddenNode"]["state"] == "disabled"
    assert nodes["NoSuchNodeAnywhere"]["state"] == "missing"
    packs = json.loads((home / "state" / "custom_nodes_cache.json").read_text())["packs"]
    good = next(p for p in packs if p["name"] == "GoodPack")
    assert good["version"] == "2.1.0" and good["node_types"] == ["GoodNode"] and good["enabled"]


def test_run_cycle_reports_broken_workflows_and_finishes_the_rest(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.raw_workflow("torn.json", b'{"nodes": [{"id": 1, "type": "KSam')
    comfy_tree.raw_workflow("empty.json", b"")
    comfy_tree.workflow("not_a_workflow.json", {"hello": "world"})
    comfy_tree.workflow("good.json", ui_workflow([ui_node(1, "VAELoader", ["missing.safetensors"])]))
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    # Unreadable workflows are findings of the report, not a failed cycle (issue 10): the scan did its job.
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name, words in (
        ("torn.json", "invalid JSON"),
        ("empty.json", "empty file"),
        ("not_a_workflow.json", "not a ComfyUI workflow"),
    ):
        lines = [line for line in result.stderr.splitlines() if name in line and words in line]
        assert lines, f"no one-line error for {name} in:\n{result.stderr}"
    report = _by_workflow(_report(home))
    assert report["torn.json"]["readiness"] == "error"
    assert report["good.json"]["readiness"] == "needs_review"  # offline: the missing VAE was not searched
    assert report["good.json"]["missing_models"][0]["status"] == "NOT_SEARCHED"


def test_run_cycle_exits_75_naming_the_holder_when_another_cycle_runs(comfy_tree: ComfyTree, home: Path) -> None:
    with CycleLock(home / "state" / "cycle.lock"):
        result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    assert result.returncode == 75
    assert f"pid {os.getpid()}" in result.stderr
    assert not (home / "state" / "gate.json").exists()  # the running cycle's files are not touched


def test_run_cycle_takes_over_a_lock_left_by_a_dead_process(comfy_tree: ComfyTree, home: Path) -> None:
    code = (
        "import os, sys, pathlib; from comfywatchman.lock import CycleLock; "
        "CycleLock(pathlib.Path(sys.argv[1])).acquire(); os._exit(0)"  # dies holding the lock
    )
    subprocess.run([sys.executable, "-c", code, str(home / "state" / "cycle.lock")], check=True)
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    assert result.returncode == 0, result.stderr
    assert "taking over a lock left by pid" in result.stderr


def test_config_errors_are_all_reported_with_file_and_key(tmp_path: Path, home: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text(
        '[schedule]\nmin_vram_gb = "eight"\ninterval_minuts = 60\n[search]\nbackend_order = ["civitai", "bing"]\n'
    )
    result = run_cli("--run-cycle", "--force", "--config", str(config), home=home)
    assert result.returncode == 2
    assert f"{config}: at 'schedule.min_vram_gb': 'eight' is not of type 'number'" in result.stderr
    assert "interval_minuts" in result.stderr
    assert not (home / "state").exists()  # nothing ran


def test_config_unknown_backend_is_refused(tmp_path: Path, home: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text('[search]\nbackend_order = ["civitai", "bing"]\n')
    result = run_cli("--run-cycle", "--force", "--config", str(config), home=home)
    assert result.returncode == 2
    assert f"{config}: at 'search.backend_order[1]': unknown backend 'bing'" in result.stderr


def test_run_cycle_fails_with_one_line_when_comfyui_root_is_missing(tmp_path: Path, home: Path) -> None:
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(tmp_path / "nowhere"), home=home)
    assert result.returncode == 2  # a configuration error: nothing ran, nothing was written
    assert f"{tmp_path / 'nowhere'}: ComfyUI root does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_intake_prints_last_acknowledgments_as_table_and_json(comfy_tree: ComfyTree, home: Path) -> None:
    for index in range(3):
        comfy_tree.workflow(f"w{index}.json", ui_workflow([ui_node(1, "KSampler", [])]))
    assert (
        run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home).returncode
        == 0
    )
    comfy_tree.workflow("w1.json", ui_workflow([ui_node(1, "KSampler", []), ui_node(2, "VAEDecode", [])]))
    assert (
        run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home).returncode
        == 0
    )

    table = run_cli("--list-intake", "2", home=home)
    assert table.returncode == 0
    lines = table.stdout.strip().splitlines()
    assert len(lines) == 3 and "changed" in lines[-1] and lines[-1].endswith("w1.json")
    as_json = json.loads(run_cli("--list-intake", "10", "--json", home=home).stdout)
    assert [r["kind"] for r in as_json] == ["new", "new", "new", "changed"]


def test_secrets_never_reach_state_output_or_logs(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("w.json", ui_workflow([ui_node(1, "LoraLoader", ["x.safetensors", 1, 1])]))
    secret = {"CIVITAI_API_KEY": "civitai-secret-123456", "HF_TOKEN": "hf_secretsecretsecret"}
    result = run_cli(
        "--run-cycle",
        "--force",
        "--offline",
        "--verbose",
        "--comfyui-root",
        str(comfy_tree.root),
        home=home,
        env=secret,
    )
    assert result.returncode == 0, result.stderr
    texts = [result.stdout, result.stderr] + [p.read_text(errors="replace") for p in home.rglob("*") if p.is_file()]
    for value in secret.values():
        assert not any(value in text for text in texts)


def test_make_stage_targets_run_one_stage_each(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("w.json", ui_workflow([ui_node(1, "KSampler", [])]))
    for stage in ("gate", "cache", "intake", "scan", "search", "verify", "report"):
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "jobs" / f"{stage}.py"),
                "--offline",
                "--comfyui-root",
                str(comfy_tree.root),
                *(["--force"] if stage == "gate" else []),  # `make gate ARGS=--force`: a manual run
            ],
            cwd=home,
            env=subprocess_env(home),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, (stage, result.stderr)
    report = _report(home)
    gate = json.loads((home / "state" / "gate.json").read_text())
    assert report["cycle_id"] == gate["cycle_id"]  # stages run alone share the gate's cycle id
    assert [s["stage"] for s in report["cycle"]["stages"]] == ["gate", "cache", "intake", "scan", "search", "verify"]


def test_version_prints_the_package_version(home: Path) -> None:
    result = run_cli("--version", home=home)
    assert result.returncode == 0 and result.stdout.startswith("comfywatchman ")


def test_backends_flag_refuses_unknown_backend_naming_the_flag(home: Path) -> None:
    result = run_cli("--run-cycle", "--force", "--offline", "--backends", "civitai,bing", home=home)
    assert result.returncode == 2
    assert "--backends: at 'search.backend_order[1]': unknown backend 'bing'" in result.stderr


def test_the_gpu_a_cycle_sees_is_the_tests_busy_one_not_this_machines(home: Path) -> None:
    # Every command under test gets tests/fakes/busy_gpu as its NVML: without --force the gate skips on it
    # alike on every machine, so the other tests (which pass --force, as a manual run does) prove that no
    # result of theirs depends on this machine's GPU.
    result = run_cli("--run-cycle", "--offline", home=home)
    assert result.returncode == 75, result.stderr
    assert "vram: GPU 0 (Fake busy GPU (tests/fakes/busy_gpu)): 0.2 GiB free of 24.0, need 4" in result.stderr
    gate = artifacts.read(home / "state" / "gate.json", "gate")
    assert gate["verdict"] == "skip" and gate["gpu"]["gpus"][0]["free_gb"] == 0.25
