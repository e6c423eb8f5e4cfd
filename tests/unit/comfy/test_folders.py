"""Model folders: models/ with legacy names, pack folders, and extra_model_paths.yaml."""

from __future__ import annotations

from pathlib import Path

from comfywatchman.comfy.folders import model_paths


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
