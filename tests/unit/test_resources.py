"""pyproject.toml's package list is whole, and every shipped folder is reachable through resources.py."""

from __future__ import annotations

import sys
from pathlib import Path

from comfywatchman import resources
from tests.helpers.comfy_tree import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_under_lib_is_listed() -> None:
    # Listed by hand (the mapped folders cannot be found), so a new subpackage must be added there too.
    found = {".".join(path.parent.relative_to(REPO / "lib").parts) for path in (REPO / "lib").rglob("__init__.py")}
    assert found <= set(SETUPTOOLS["packages"]), sorted(found - set(SETUPTOOLS["packages"]))


def test_mapped_packages_are_the_top_level_folders_resources_reads() -> None:
    mapping = SETUPTOOLS["package-dir"]
    assert set(mapping) - {""} <= set(SETUPTOOLS["packages"])
    assert resources.SCHEMAS_DIR.samefile(REPO / mapping["comfywatchman.schemas"])
    assert resources.DEFAULT_CONFIG.samefile(REPO / mapping["comfywatchman.defaults"] / "default.toml")
    assert resources.DEMO_COMFYUI_ROOT.samefile(REPO / mapping["comfywatchman.examples"] / "demo-comfyui")
    assert resources.schema_path("scan").is_file()
    assert (resources.DATA_DIR / "core_nodes.txt").is_file()


def test_demo_extra_model_paths_reach_the_shipped_shared_models() -> None:
    # base_path is relative to the yaml's folder, so it holds wherever the examples folder is installed.
    text = (resources.DEMO_COMFYUI_ROOT / "extra_model_paths.yaml").read_text(encoding="utf-8")
    base = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("base_path:"))
    assert not Path(base).is_absolute()
    assert (resources.DEMO_COMFYUI_ROOT / base).resolve() == resources.DEMO_SHARED_MODELS.resolve()
    assert any(resources.DEMO_SHARED_MODELS.rglob("*.safetensors"))
