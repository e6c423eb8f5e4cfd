"""The real CLI against local doubles of Civitai and the Hub: the right status for every case, zero false
FOUND, and a second cycle within the TTL that sends no request at all (counted by the fake servers)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman import artifacts
from tests.fakes.civitai_server import FakeCivitai, sha256_of
from tests.fakes.hf_server import FakeHub, lfs_sha
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow

pytestmark = pytest.mark.slow

# (loader node, file name, folder, declared sha256, expected status, sha256 of the true file or None)
CASES = [
    ("LoraLoader", "add_detail.safetensors", "loras", None, "FOUND", sha256_of("add_detail.safetensors")),
    (
        "TestEmbeddingLoader",
        "EasyNegative.safetensors",
        "embeddings",
        None,
        "FOUND",
        sha256_of("easynegative.safetensors"),
    ),
    ("CheckpointLoaderSimple", "juggernaut_xl_v9_rundiffusion.safetensors", "checkpoints", None, "UNCERTAIN", None),
    ("LoraLoader", "old_style.safetensors", "loras", None, "NOT_FOUND", None),
    ("LoraLoader", "common_name.safetensors", "loras", None, "UNCERTAIN", None),
    ("UNETLoader", "wan2.1_t2v_14B_fp8_scaled.safetensors", "diffusion_models", None, "FOUND", lfs_sha("wan14")),
    # A gated repo the token's account has not been approved for: proven, never queued (issue 11).
    ("UNETLoader", "flux1-dev.safetensors", "diffusion_models", None, "NEEDS_ACCESS", lfs_sha("flux1dev")),
    ("VAELoader", "diffusion_pytorch_model.safetensors", "vae", None, "NOT_FOUND", None),
    ("CheckpointLoaderSimple", "zzqx_nothing_v2.safetensors", "checkpoints", None, "NOT_FOUND", None),
    ("LoraLoader", "../../etc/passwd.safetensors", "loras", None, "INVALID_FILENAME", None),
]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeCivitai, FakeHub]]:
    with FakeCivitai() as civitai, FakeHub() as hub:
        yield civitai, hub


def _config(tmp_path: Path, civitai: FakeCivitai, hub: FakeHub) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[search]
backend_order = ["qwen", "civitai", "huggingface"]
backoff_base_seconds = 0.001
backoff_max_seconds = 0.01
min_interval_seconds = 0.0
[civitai]
base_url = "{civitai.url}"
[huggingface]
endpoint = "{hub.url}"
authors = ["Comfy-Org", "city96", "black-forest-labs"]
[qwen]
command = "qwen-is-not-installed-here"
[scan.loaders]
TestEmbeddingLoader = {{ name = "embeddings" }}
"""
    )
    return path


def _tree(comfy_tree: ComfyTree) -> None:
    nodes = []
    for index, (node_type, name, _folder, _sha, _status, _truth) in enumerate(CASES, start=1):
        nodes.append(ui_node(index, node_type, [name, 1.0, 1.0] if node_type == "LoraLoader" else [name]))
    # The same file in two workflows is searched once.
    comfy_tree.workflow("everything.json", ui_workflow(nodes))
    comfy_tree.workflow("one_lora.json", ui_workflow([ui_node(1, "LoraLoader", ["add_detail.safetensors", 1, 1])]))


def test_search_gives_right_status_for_every_case_and_second_cycle_sends_nothing(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, fakes: tuple[FakeCivitai, FakeHub]
) -> None:
    civitai, hub = fakes
    _tree(comfy_tree)
    config = _config(tmp_path, civitai, hub)
    env = {"CIVITAI_API_KEY": "civ-SECRET-KEY-123", "HF_TOKEN": "hf_SECRET_TOKEN_456"}
    first = run_cli(
        "--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root), home=home, env=env
    )
    assert first.returncode == 0, first.stderr
    search = artifacts.read(home / "state" / "search.json", "search")
    by_name = {r["name"]: r for r in search["results"]}
    assert {name: by_name[name]["status"] for _t, name, *_ in CASES} == {
        name: status for _t, name, _f, _s, status, _x in CASES
    }
    for _t, name, folder, _sha, status, truth in CASES:
        result = by_name[name]
        assert result["type"] == folder
        if status == "FOUND" and result["source"] != "manager_model_list":
            # Zero false FOUND: the proven file is the true one.
            assert result["sha256"] == truth.lower() and result["url"] and result["size"], result
    # Files on ComfyUI-Manager's curated list are resolved from it, offline, before any search; the URL
    # check (a HEAD) went to the configured mirror, not to the real host.
    assert by_name["EasyNegative.safetensors"]["source"] == "manager_model_list"
    assert by_name["EasyNegative.safetensors"]["url"] == "https://civitai.com/api/download/models/9208"
    assert by_name["EasyNegative.safetensors"]["details"]["url_check"].startswith("HEAD ")
    assert len(by_name["add_detail.safetensors"]["workflows"]) == 2
    first_requests = civitai.count + hub.count
    assert first_requests == sum(search["requests"].values()) > 0

    queue = artifacts.read(home / "state" / "download_queue.json", "download_queue")
    tasks = {t["name"]: t for t in queue["tasks"]}
    assert set(tasks) == {name for _t, name, _f, _s, status, _x in CASES if status == "FOUND"}
    lora = tasks["add_detail.safetensors"]
    assert lora["folder"] == "loras" and lora["target_path"] == str(
        comfy_tree.root / "models" / "loras" / "add_detail.safetensors"
    )
    assert lora["requires_review"] is True and lora["blocks_workflows"] == 2
    # Diffusion models land where the templates, the docs and ComfyUI-Manager put them, not in models/unet/.
    assert tasks["wan2.1_t2v_14B_fp8_scaled.safetensors"]["target_path"] == str(
        comfy_tree.root / "models" / "diffusion_models" / "wan2.1_t2v_14B_fp8_scaled.safetensors"
    )
    # The gated file is an action of its own: the page where access is granted and the token to set.
    report = artifacts.read(home / "output" / "reports" / "status" / "master_status.json", "master_status")
    access = [a for a in report["actions"] if a["kind"] == "get_access"]
    assert [(a["item"], a["url"]) for a in access] == [
        ("flux1-dev.safetensors", "https://huggingface.co/black-forest-labs/FLUX.1-dev")
    ]
    assert "HF_TOKEN" in access[0]["detail"] and "hf_SECRET" not in access[0]["detail"]

    second = run_cli(
        "--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root), home=home, env=env
    )
    assert second.returncode == 0, second.stderr
    assert civitai.count + hub.count == first_requests  # nothing new was asked
    again = artifacts.read(home / "state" / "search.json", "search")
    assert {r["name"]: r["status"] for r in again["results"]} == {r["name"]: r["status"] for r in search["results"]}
    # Nothing changed and no cached answer expired: the search left its outputs as they were.
    assert again["cycle_id"] == search["cycle_id"] and "search: nothing changed since cycle" in second.stderr

    # Without its record of what it read, the search runs again: every answer comes from the cache.
    (home / "state" / "search_inputs.json").unlink()
    third = run_cli(
        "--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root), home=home, env=env
    )
    assert third.returncode == 0, third.stderr
    assert civitai.count + hub.count == first_requests
    again = artifacts.read(home / "state" / "search.json", "search")
    assert {r["name"]: r["status"] for r in again["results"]} == {r["name"]: r["status"] for r in search["results"]}
    assert again["cache_hits"] == len([c for c in CASES if c[4] not in ("INVALID_FILENAME",)])

    text = (
        first.stderr
        + second.stderr
        + third.stderr
        + "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())
    )
    assert "civ-SECRET-KEY-123" not in text and "hf_SECRET_TOKEN_456" not in text


def test_search_records_error_and_goes_on_when_civitai_is_down(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, fakes: tuple[FakeCivitai, FakeHub]
) -> None:
    civitai, hub = fakes
    comfy_tree.workflow(
        "w.json",
        ui_workflow(
            [
                ui_node(1, "UNETLoader", ["flux1-dev.safetensors"]),
                ui_node(2, "LoraLoader", ["add_detail.safetensors", 1, 1]),
            ]
        ),
    )
    config = _config(tmp_path, civitai, hub)
    config.write_text(config.read_text().replace(civitai.url, "http://127.0.0.1:9"))  # nothing listens there
    result = run_cli(
        "--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root), home=home
    )
    assert result.returncode == 0, result.stderr
    by_name = {r["name"]: r for r in artifacts.read(home / "state" / "search.json", "search")["results"]}
    assert by_name["flux1-dev.safetensors"]["status"] == "NEEDS_ACCESS"  # the Hub still answered
    assert by_name["add_detail.safetensors"]["status"] == "ERROR"  # retried next cycle, never cached
    cache = json.loads((home / "state" / "search_cache.json").read_text())
    assert not any("add_detail" in key for key in cache["entries"])
