"""The real command: a cycle's process walks the model folders of the plan the last cycle kept as it starts, and
the model cache is what a walk after the gate gives, when models are added or removed between cycles and when
the config asks for other bounds (the plan then does not match and the cache stage walks itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfywatchman import walk_ahead
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow

pytestmark = pytest.mark.slow

WALKED_AHEAD = "the model folders were walked as this cycle's process started"


def _cycle(comfy_tree: ComfyTree, home: Path, config: Path, fork: str = "1", code: int = 0) -> str:
    args = (
        "--run-cycle",
        "--force",
        "--offline",
        "-v",
        "--config",
        str(config),
        "--comfyui-root",
        str(comfy_tree.root),
    )
    result = run_cli(*args, home=home, env={"COMFYWATCHMAN_FORK_STAGES": fork})
    assert result.returncode == code, result.stderr
    return result.stderr


def _cached(home: Path) -> dict[str, list[tuple[str, int]]]:
    cache = json.loads((home / "state" / "model_cache.json").read_text())
    return {
        folder: [(f["name"], f["size"]) for f in group["files"]]
        for folder, group in cache["folders"].items()
        if group["files"]
    }


def test_a_cycle_takes_the_walk_begun_at_its_start_and_sees_every_change(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    comfy_tree.model("checkpoints", "base.safetensors")
    comfy_tree.model("loras", "SDXL/style.safetensors", size=10)
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])]))
    config = tmp_path / "cw.toml"
    config.write_text("")
    first = _cycle(comfy_tree, home, config)
    assert WALKED_AHEAD not in first  # a first cycle has no plan
    assert (home / "state" / walk_ahead.FILE_NAME).is_file()
    assert WALKED_AHEAD in _cycle(comfy_tree, home, config)
    comfy_tree.model("loras", "SDXL/deep/new.safetensors", size=7)
    (comfy_tree.root / "models" / "checkpoints" / "base.safetensors").unlink()
    assert WALKED_AHEAD in _cycle(comfy_tree, home, config)
    walked_ahead = _cached(home)
    assert walked_ahead["loras"] == [("SDXL/deep/new.safetensors", 7), ("SDXL/style.safetensors", 10)]
    assert "checkpoints" not in walked_ahead
    _cycle(comfy_tree, home, config, fork="0")  # no fork: no walk ahead, the cache stage walks
    assert _cached(home) == walked_ahead
    config.write_text("[comfyui]\nmodel_walk_max_depth = 1\n")  # other bounds: the kept plan is not this one
    # (The cut walk is an error of the cache stage: the cycle exits 1.)
    assert WALKED_AHEAD not in _cycle(comfy_tree, home, config, code=1)
    assert _cached(home)["loras"] == [("SDXL/style.safetensors", 10)]
    again = _cycle(comfy_tree, home, config, code=1)  # the new plan was kept
    assert WALKED_AHEAD in again and "folders deeper than 1 levels not walked" in again
