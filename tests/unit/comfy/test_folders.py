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
