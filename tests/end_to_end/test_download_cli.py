"""The real CLI takes workflows from missing files to ready: reviewed downloads (--queue, --approve,
--download) and trusted ones inside a cycle (--auto-download), against local doubles serving real bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from tests.fakes.byte_server import ByteServer
from tests.fakes.civitai_server import FakeCivitai, make_file, make_model
from tests.fakes.hf_server import FakeHub, Repo
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow
from tests.helpers.model_files import safetensors_bytes, sha

pytestmark = pytest.mark.slow

LORA = safetensors_bytes(2_000_000, seed=11)
UNET = safetensors_bytes(3_000_000, seed=12)
SECRETS = {"CIVITAI_API_KEY": "civ-SECRET-KEY-123", "HF_TOKEN": "hf_SECRET_TOKEN_456"}


@pytest.fixture
def services() -> Iterator[tuple[FakeCivitai, FakeHub, ByteServer]]:
    lora_file = make_file(3001, "add_detail.safetensors", size_kb=len(LORA) / 1024)
    lora_file["hashes"]["SHA256"] = sha(LORA).upper()
    models = [make_model(1001, "Detail Tweaker LoRA", "LORA", [(2001, "v1.0", [lora_file])])]
    with ByteServer() as cdn, FakeCivitai(models) as civitai, FakeHub([Repo("org/unets", {"x.safetensors": (
        len(UNET), sha(UNET))})]) as hub:  # fmt: skip
        cdn.add("/signed/2001", LORA, filename="add_detail.safetensors")
        cdn.add(f"/{sha(UNET)}", UNET)
        civitai.download_target = f"{cdn.url}/signed"
        hub.cdn = cdn.url
        yield civitai, hub, cdn  # type: ignore[misc]


def _config(tmp_path: Path, civitai: FakeCivitai, hub: FakeHub) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[search]
backend_order = ["civitai"]
backoff_base_seconds = 0.001
backoff_max_seconds = 0.01
min_interval_seconds = 0.0
[civitai]
base_url = "{civitai.url}"
[huggingface]
endpoint = "{hub.url}"
[download]
min_free_mb = 0
backoff_max_seconds = 0.0
"""
    )
    return path


def _unet_node(node_id: int = 2) -> dict[str, Any]:
    declared = {
        "name": "x.safetensors",
        "url": "https://huggingface.co/org/unets/resolve/main/x.safetensors",
        "directory": "diffusion_models",
        "hash": sha(UNET),
        "hash_type": "SHA256",
    }
    return ui_node(node_id, "UNETLoader", ["wan/x.safetensors", "default"], properties={"models": [declared]})


def _cli(config: Path, tree: ComfyTree, home: Path, *args: str) -> Any:
    result = run_cli(*args, "--config", str(config), "--comfyui-root", str(tree.root), home=home, env=SECRETS)
    return result


def _readiness(home: Path) -> dict[str, Any]:
    report = artifacts.read(home / "output" / "reports" / "status" / "master_status.json", "master_status")
    return {w["workflow"]: w for w in report["workflows"]} | {"_generated_at": report["generated_at"]}


def test_reviewed_downloads_take_workflows_from_missing_to_ready(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, services: tuple[FakeCivitai, FakeHub, ByteServer]
) -> None:
    civitai, hub, cdn = services
    comfy_tree.workflow("lora.json", ui_workflow([ui_node(1, "LoraLoader", ["add_detail.safetensors", 1, 1])]))
    comfy_tree.workflow("both.json", ui_workflow([ui_node(1, "LoraLoader", ["add_detail.safetensors", 1, 1]),
                                                  _unet_node()]))  # fmt: skip
    config = _config(tmp_path, civitai, hub)
    first = _cli(config, comfy_tree, home, "--run-cycle", "--force")
    assert first.returncode == 0, first.stderr
    assert {k: v["readiness"] for k, v in _readiness(home).items() if k != "_generated_at"} == {
        "lora.json": "resolvable", "both.json": "resolvable"}  # fmt: skip

    listing = _cli(config, comfy_tree, home, "--queue", "--json")
    assert listing.returncode == 0, listing.stderr
    tasks = {t["name"]: t for t in json.loads(listing.stdout)}
    lora, unet = tasks["add_detail.safetensors"], tasks["wan/x.safetensors"]
    assert lora["state"] == unet["state"] == "pending_review"
    assert lora["evidence"] == "exact_filename" and unet["evidence"] == "declared"
    assert lora["target"] == str(comfy_tree.root / "models" / "loras" / "add_detail.safetensors")
    assert unet["target"] == str(comfy_tree.root / "models" / "diffusion_models" / "wan" / "x.safetensors")
    assert len(lora["workflows"]) == 2 and len(unet["workflows"]) == 1
    assert unet["trusted_for_auto_download"] and lora["trusted_for_auto_download"] is None
    text = _cli(config, comfy_tree, home, "--queue").stdout
    assert lora["id"] in text and "unblocks:" in text and "pending_review" in text

    nothing = _cli(config, comfy_tree, home, "--download")  # manual review is the default
    assert nothing.returncode == 0 and "nothing to download" in nothing.stdout and cdn.count == 0

    approved = _cli(config, comfy_tree, home, "--approve", lora["id"][:6], "--download")
    assert approved.returncode == 0, approved.stderr
    assert f"approved {lora['id']}" in approved.stdout and "1 downloaded" in approved.stdout
    assert (comfy_tree.root / "models" / "loras" / "add_detail.safetensors").read_bytes() == LORA
    civitai_download = [r for r in civitai.requests if r.path.startswith("/api/download/")]
    assert civitai_download[0].headers["Authorization"] == "Bearer civ-SECRET-KEY-123"
    assert all("Authorization" not in r.headers for r in cdn.requests)
    # Two workflows need the file: one task, one download.
    assert [r.path for r in cdn.requests] == ["/signed/2001"]

    dry = _cli(config, comfy_tree, home, "--approve-proven", "--download", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would approve {unet['id']}" in dry.stdout and "would download" in dry.stdout
    assert "wan/x.safetensors" in dry.stdout and "lora" not in dry.stdout.split("would download")[1]
    assert not (comfy_tree.root / "models" / "diffusion_models" / "wan").exists()

    proven = _cli(config, comfy_tree, home, "--approve-proven", "--download")
    assert proven.returncode == 0, proven.stderr
    assert (comfy_tree.root / "models" / "diffusion_models" / "wan" / "x.safetensors").read_bytes() == UNET
    assert "Authorization" not in cdn.requests[-1].headers
    assert hub.requests[-1].headers["Authorization"] == "Bearer hf_SECRET_TOKEN_456"

    again = _cli(config, comfy_tree, home, "--run-cycle", "--force")
    assert again.returncode == 0, again.stderr
    ready = _readiness(home)
    assert ready["lora.json"]["readiness"] == ready["both.json"]["readiness"] == "ready"
    assert ready["both.json"]["last_resolved_at"] == ready["_generated_at"]
    record = json.loads((home / "state" / "downloads.json").read_text())["tasks"][lora["id"]]
    assert record["approved_by"] == "user" and record["outcome"]["status"] == "done"

    everything = "".join(r.stdout + r.stderr for r in (first, listing, approved, proven, again))
    everything += "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())
    assert "civ-SECRET-KEY-123" not in everything and "hf_SECRET_TOKEN_456" not in everything


def test_auto_download_makes_a_declared_file_ready_in_the_same_cycle(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, services: tuple[FakeCivitai, FakeHub, ByteServer]
) -> None:
    civitai, hub, cdn = services
    comfy_tree.workflow("unet.json", ui_workflow([_unet_node(1)]))
    comfy_tree.workflow("lora.json", ui_workflow([ui_node(1, "LoraLoader", ["add_detail.safetensors", 1, 1])]))
    config = _config(tmp_path, civitai, hub)

    dry = _cli(config, comfy_tree, home, "--run-cycle", "--force", "--auto-download", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would download" in dry.stderr and "wan/x.safetensors" in dry.stderr
    assert cdn.count == 0 and not (home / "state" / "downloads.json").exists()

    cycle = _cli(config, comfy_tree, home, "--run-cycle", "--force", "--auto-download")
    assert cycle.returncode == 0, cycle.stderr
    ready = _readiness(home)
    assert ready["unet.json"]["readiness"] == "ready"
    assert ready["unet.json"]["last_resolved_at"] == ready["_generated_at"]
    # An exact file name is no proof of identity: that one still waits for a person.
    assert ready["lora.json"]["readiness"] == "resolvable"
    assert not (comfy_tree.root / "models" / "loras" / "add_detail.safetensors").exists()
    run = json.loads((home / "state" / "runs" / "download.json").read_text())
    assert run["ok"] and run["counts"]["downloaded"] == 1
    record = next(iter(json.loads((home / "state" / "downloads.json").read_text())["tasks"].values()))
    assert record["approved_by"] == "policy" and record["outcome"]["verified"] == "sha256"
