"""pyproject.toml's package list is whole, and every shipped folder is reachable through resources.py."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from comfywatchman import resources
from comfywatchman.errors import ConfigError
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


def test_a_package_folder_must_be_a_folder_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder comes from the package's import spec: a plain folder is handed out as it is (without running
    the package), a package inside a zip file is refused with the package named."""
    folder = tmp_path / "plain" / "plainpkg" / "data"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("", encoding="utf-8")
    (folder / "__init__.py").write_text("raise RuntimeError('not to be run')\n", encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "zipped.zip", "w") as archive:
        archive.writestr("zippedpkg/__init__.py", "")
        archive.writestr("zippedpkg/data/__init__.py", "")
    monkeypatch.syspath_prepend(str(tmp_path / "plain"))
    monkeypatch.syspath_prepend(str(tmp_path / "zipped.zip"))
    assert resources.package_folder("plainpkg.data") == folder
    with pytest.raises(ConfigError, match=r"zippedpkg\.data: installed as .*not as a folder on disk"):
        resources.package_folder("zippedpkg.data")
    for name in ("plainpkg", "zippedpkg"):
        sys.modules.pop(name, None)
