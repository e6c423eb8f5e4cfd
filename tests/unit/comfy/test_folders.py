"""Model folders: models/ with legacy names, pack folders, and extra_model_paths.yaml."""

from __future__ import annotations

from pathlib import Path

from comfywatchman.comfy import model_walk
from comfywatchman.comfy.folders import ModelPaths, model_paths, read_extra_model_paths, walk_once
from comfywatchman.config import load
from comfywatchman.stages import intake
from comfywatchman.stages.context import StageContext
from tests.helpers.comfy_tree import ComfyTree
from tests.helpers.limits import deadline


def test_model_paths_orders_default_sections_first_and_maps_legacy_names(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    (root / "models" / "ipadapter").mkdir(parents=True)
    (root / "extra_model_paths.yaml").write_text(
        "a111:\n  base_path: ../sd\n  checkpoints: models/Stable-diffusion\n"
        "  loras: |\n    models/Lora\n    models/LyCORIS\n"
        "shared:\n  base_path: /mnt/shared\n  is_default: true\n  unet: diffusion\n  clip: te\n",
        encoding="utf-8",
    )
    paths = model_paths(root)
    assert paths.folders["checkpoints"][-1] == tmp_path / "sd" / "models" / "Stable-diffusion"
    assert paths.folders["loras"][-2:] == [tmp_path / "sd/models/Lora", tmp_path / "sd/models/LyCORIS"]
    assert paths.folders["diffusion_models"][0] == Path("/mnt/shared/diffusion")
    assert paths.folders["text_encoders"][0] == Path("/mnt/shared/te")
    assert root / "models" / "clip" in paths.folders["text_encoders"]
    assert paths.folders["ipadapter"] == [root / "models" / "ipadapter"]


def test_diffusion_models_go_to_the_folder_named_like_the_type_unless_is_default_says_otherwise(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ComfyUI"
    models = root / "models"
    (models / "unet").mkdir(parents=True)
    (models / "diffusion_models").mkdir()
    assert model_paths(root).folders["diffusion_models"] == [models / "diffusion_models", models / "unet"]
    # neither exists yet: where the templates, the docs and ComfyUI-Manager put them
    bare = tmp_path / "bare"
    (bare / "models").mkdir(parents=True)
    assert model_paths(bare).folders["diffusion_models"][0] == bare / "models" / "diffusion_models"
    # only unet exists: files go where the user already keeps them
    (models / "diffusion_models").rmdir()
    assert model_paths(root).folders["diffusion_models"][0] == models / "unet"
    (models / "diffusion_models").mkdir()
    (root / "extra_model_paths.yaml").write_text(
        "mine:\n  base_path: /mnt/big\n  is_default: true\n  diffusion_models: unet\n", encoding="utf-8"
    )
    assert model_paths(root).folders["diffusion_models"][0] == Path("/mnt/big/unet")


# Symlink loops (issue 10): followed like ComfyUI follows links, but each real directory walked once.


def test_walk_once_follows_links_but_enters_a_loop_once(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.json").write_text("{}")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a")  # one loop
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "y.json").write_text("{}")
    (tmp_path / "a" / "linked").symlink_to(tmp_path / "other")  # a link out of the tree: followed
    with deadline(10):
        files = [f"{folder}/{name}" for folder, _dirs, names in walk_once(tmp_path / "a") for name in names]
    assert sorted(Path(f).name for f in files) == ["x.json", "y.json"]


def _two_loops(folder: Path) -> None:
    (folder / "p" / "q").mkdir(parents=True, exist_ok=True)
    (folder / "p" / "q" / "to_r").symlink_to(folder / "r")
    (folder / "r").mkdir(exist_ok=True)
    (folder / "r" / "to_p").symlink_to(folder / "p")
    (folder / "p" / "q" / "self").symlink_to(folder / "p")


def test_intake_lists_each_workflow_once_with_two_symlink_loops(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("w.json", {"nodes": []})
    comfy_tree.workflow("p/q/deep.json", {"nodes": []})
    _two_loops(comfy_tree.workflows)
    comfy_tree.workflow("r/side.json", {"nodes": []})
    cfg = load(flags={"comfyui_root": comfy_tree.root, "home": home, "offline": True}, env={})
    with deadline(20):
        found, _summaries = intake.find_workflows(StageContext(cfg, "c"))
    assert sorted(f.path.name for f in found) == ["deep.json", "side.json", "w.json"]


def test_diffusers_folder_with_two_symlink_loops_is_listed_once(tmp_path: Path) -> None:
    diffusers = tmp_path / "models" / "diffusers"
    _two_loops(diffusers)
    (diffusers / "r" / "model_index.json").write_text("{}")
    with deadline(20):
        entries = model_walk.diffusers_entries(diffusers)
    # one model, under whichever of its two names the walk met first
    assert len(entries) == 1 and entries[0][0] in ("r", "p/q/to_r")


def test_a_broken_extra_model_paths_file_is_one_line_naming_it_and_where(tmp_path: Path) -> None:
    config = tmp_path / "extra_model_paths.yaml"
    unclosed = b"comfyui:\n  base_path: [unclosed\n  loras: models/loras\n"
    for content, said in (
        (unclosed, "not valid YAML (expected ',' or ']', but got ':' at line 3 column 8)"),
        (b"comfyui:\n  base_path: \xff\xfe\n", "not UTF-8 text (byte 22)"),
    ):
        config.write_bytes(content)
        found = ModelPaths()
        read_extra_model_paths(config, found, {})
        assert found.problems == [f"{config}: cannot read extra model paths: {said}"]
