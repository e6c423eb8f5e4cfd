"""``base_path: /`` (a typo) in extra_model_paths.yaml: the cycle walks that folder within its bounds and the
report names the yaml file, the section and the path instead of silently indexing the whole disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow

pytestmark = pytest.mark.slow


def test_a_base_path_typo_is_bounded_and_named_in_the_report(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    disk = tmp_path / "disk"  # stands for / : far more files than any models folder holds
    for index in range(60):
        folder = disk / f"usr{index}" / "lib" / "share"
        folder.mkdir(parents=True)
        for number in range(20):
            (folder / f"file{number}.bin").write_bytes(b"")
    comfy_tree.model("checkpoints", "real.safetensors")
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["real.safetensors"])]))
    yaml_file = comfy_tree.root / "extra_model_paths.yaml"
    yaml_file.write_text(f"my_models:\n  base_path: {disk}\n  checkpoints: .\n")
    config = tmp_path / "cw.toml"
    config.write_text("[comfyui]\nmodel_walk_max_entries = 500\n")
    args = ("--run-cycle", "--force", "--offline", "--config", str(config), "--comfyui-root", str(comfy_tree.root))
    result = run_cli(*args, home=home)
    assert result.returncode == 1  # the cache stage reports the problem; the rest of the cycle ran
    assert "Traceback" not in result.stderr
    assert f"{yaml_file}: section 'my_models': checkpoints folder {disk}: stopped after 500" in result.stderr
    status = home / "output" / "reports" / "status"
    report = json.loads((status / "master_status.json").read_text())
    assert report["model_folder_limits"] == [
        {
            "folder": "checkpoints",
            "path": str(disk),
            "config": str(yaml_file),
            "section": "my_models",
            "reason": "stopped after 500 files and folders (model_walk_max_entries)",
            "entries": 500,
        }
    ]
    assert report["summary"]["ready"] == 1  # the install's own models were all found
    markdown = (status / "master_status.md").read_text()
    assert f"**Model folder `{disk}`** (checkpoints) (declared in `{yaml_file}`, section `my_models`)" in markdown
    cache = json.loads((home / "state" / "model_cache.json").read_text())
    assert cache["file_count"] < 500
