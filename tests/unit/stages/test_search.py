"""The search stage when one workflow changed: the answers of the others are reused, and search.json and the
download queue are what a search from scratch gives; a changed declaration is answered again. Real stages on a
small install in tmp_path."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, stage_inputs
from comfywatchman.stages import search
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import DECLARED, T0, context, make_install, run, search_files


def outputs(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """search.json and the download queue without what names the cycle."""
    found = []
    for path, schema in zip(search_files(home), ("search", "download_queue"), strict=True):
        document = artifacts.read(path, schema)
        found.append({k: v for k, v in document.items() if k not in ("cycle_id", "generated_at")})
    return found[0], found[1]


def searched_from_scratch(comfy_tree: ComfyTree, home: Path, cycle_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    stage_inputs.path_of(home / "state", "search").unlink()
    run(context(comfy_tree, home, cycle_id, T0 + timedelta(hours=5)), ("search",))
    return outputs(home)


def test_one_changed_workflow_reuses_the_other_answers(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "UpscaleModelLoader", ["new_up.pth"]),
                ui_node(3, "LoraLoader", ["missing_lora.safetensors", 1, 1]),
            ]
        ),
    )
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages.search"):
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)), ("cache", "intake", "scan", "search"))
    assert "2 of 3 answers reused from the last search" in caplog.text  # the LoRA and the declared VAE
    reused = outputs(home)
    lora = next(r for r in reused[0]["results"] if r["name"] == "missing_lora.safetensors")
    assert [Path(w).name for w in lora["workflows"]] == ["a.json", "b.json"]  # its workflows are this cycle's
    assert [t["name"] for t in reused[1]["tasks"]] == ["declared.safetensors"]

    assert searched_from_scratch(comfy_tree, home, "c3") == reused


def test_a_changed_declaration_is_answered_again(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    assert outputs(home)[0]["counts"]["FOUND"] == 1
    moved = {**DECLARED, "url": "https://example.com/files/declared.safetensors", "directory": "vae"}
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "LoraLoader", ["missing_lora.safetensors", 1, 1]),
                ui_node(3, "VAELoader", ["declared.safetensors"], properties={"models": [moved]}),
            ]
        ),
    )
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)), ("cache", "intake", "scan", "search"))
    document, queue = outputs(home)
    vae = next(r for r in document["results"] if r["name"] == "declared.safetensors")
    assert vae["status"] == "UNCERTAIN" and "not a trusted host" in vae["candidates"][0]["reason"]
    assert queue["tasks"] == []
    assert searched_from_scratch(comfy_tree, home, "c3") == (document, queue)


def test_the_answers_basis_changes_with_the_backend_order(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    basis = stage_inputs.previous(home / "state", "search")["extra"]["basis"]  # type: ignore[index]
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    assert search.answer_basis(ctx, ["civitai"]) != basis
    (home / "config.toml").write_text(
        '[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n', encoding="utf-8"
    )
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    order = list(ctx.config.section("search")["backend_order"])
    assert search.answer_basis(ctx, order) == basis
