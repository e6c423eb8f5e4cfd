"""Finding ComfyUI-Manager's maps: each place a Manager lives, in order, with its version, on real temp trees."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from comfywatchman.comfy import manager_files
from comfywatchman.comfy.manager_files import describe_manager_file, find_manager_file, locate_manager_file, maps_used

NODE_MAP = "extension-node-map.json"
MODEL_LIST = "model-list.json"


def _write(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _clone(root: Path, folder: str = "ComfyUI-Manager", *, v4: bool = False, version: str | None = "3.41") -> Path:
    """A Manager git clone in custom_nodes: 3.x keeps the maps at its top, 4.x in comfyui_manager/."""
    clone = root / "custom_nodes" / folder
    if version is not None:
        _write(clone / "pyproject.toml", f'[project]\nname = "comfyui-manager"\nversion = "{version}"\n')
    return _write((clone / "comfyui_manager" if v4 else clone) / NODE_MAP)


def _pip_install(site_packages: Path, version: str = "4.3") -> Path:
    """The comfyui_manager package as pip lays it out: the package folder and its dist-info."""
    _write(
        site_packages / f"comfyui_manager-{version}.dist-info" / "METADATA",
        f"Name: comfyui-manager\nVersion: {version}\n",
    )
    _write(site_packages / "comfyui_manager" / "__init__.py", "")
    return _write(site_packages / "comfyui_manager" / NODE_MAP)


@pytest.fixture
def no_tool_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """This environment's own comfyui_manager (make install puts one here) out of sight."""
    monkeypatch.setattr(manager_files.importlib.util, "find_spec", lambda name: None)


@pytest.mark.parametrize("folder", ["ComfyUI-Manager", "comfyui-manager"])
@pytest.mark.parametrize("v4", [False, True])
def test_clone_in_custom_nodes_in_both_layouts(tmp_path: Path, folder: str, v4: bool) -> None:
    expected = _clone(tmp_path, folder, v4=v4, version="4.0.2" if v4 else "3.41")
    found = locate_manager_file(tmp_path, NODE_MAP)
    assert found is not None
    assert (found.path, found.source, found.version) == (expected, "custom_nodes", "4.0.2" if v4 else "3.41")
    assert find_manager_file(tmp_path, NODE_MAP) == expected


def test_clone_without_readable_pyproject_has_no_version(tmp_path: Path) -> None:
    _clone(tmp_path, version=None)
    _write(tmp_path / "custom_nodes" / "ComfyUI-Manager" / "pyproject.toml", "[project\nversion = ")
    found = locate_manager_file(tmp_path, NODE_MAP)
    assert found is not None and found.source == "custom_nodes" and found.version is None


@pytest.mark.parametrize("env", ["venv", ".venv"])
def test_package_in_comfyui_venv(tmp_path: Path, env: str, no_tool_manager: None) -> None:
    root = tmp_path / "ComfyUI"
    expected = _pip_install(root / env / "lib" / "python3.12" / "site-packages", "4.1")
    found = locate_manager_file(root, NODE_MAP)
    assert found is not None
    assert (found.path, found.source, found.version) == (expected, "comfyui_env", "4.1")


def test_package_in_portable_python_embeded_beside_root(tmp_path: Path, no_tool_manager: None) -> None:
    root = tmp_path / "ComfyUI_windows_portable" / "ComfyUI"
    root.mkdir(parents=True)
    expected = _pip_install(tmp_path / "ComfyUI_windows_portable" / "python_embeded" / "Lib" / "site-packages", "4.2")
    found = locate_manager_file(root, NODE_MAP)
    assert found is not None
    assert (found.path, found.source, found.version) == (expected.resolve(), "comfyui_env", "4.2")


def test_custom_nodes_clone_wins_over_comfyui_env(tmp_path: Path, no_tool_manager: None) -> None:
    _pip_install(tmp_path / "venv" / "lib" / "python3.11" / "site-packages")
    expected = _clone(tmp_path)
    found = locate_manager_file(tmp_path, NODE_MAP)
    assert found is not None and found.path == expected and found.source == "custom_nodes"


def test_a_map_missing_in_the_clone_is_looked_for_further(tmp_path: Path, no_tool_manager: None) -> None:
    _clone(tmp_path)  # has the node map only
    site = tmp_path / ".venv" / "lib" / "python3.11" / "site-packages"
    _pip_install(site)
    expected = _write(site / "comfyui_manager" / MODEL_LIST)
    found = locate_manager_file(tmp_path, MODEL_LIST)
    assert found is not None and found.path == expected and found.source == "comfyui_env"


def test_package_in_this_environment_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "tool-site"
    expected = _pip_install(site, "9.9")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("comfyui_manager", None)
    root = tmp_path / "ComfyUI"
    root.mkdir()
    found = locate_manager_file(root, NODE_MAP)
    assert found is not None
    assert (found.path, found.source, found.version) == (expected, "tool_env", "9.9")


def test_nowhere_is_none(tmp_path: Path, no_tool_manager: None) -> None:
    _write(tmp_path / "custom_nodes" / "ComfyUI-Manager" / "README.md", "no maps here")
    assert locate_manager_file(tmp_path, NODE_MAP) is None
    assert find_manager_file(tmp_path, NODE_MAP) is None


def test_describe_what_a_stage_used(tmp_path: Path, no_tool_manager: None) -> None:
    used = _clone(tmp_path, version="3.40")
    record = describe_manager_file(str(used), tmp_path)
    assert record is not None and record.to_json() == {"path": str(used), "source": "custom_nodes", "version": "3.40"}
    assert describe_manager_file(None, tmp_path) is None


def test_describe_a_file_the_lookup_no_longer_finds(tmp_path: Path, no_tool_manager: None) -> None:
    gone = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "comfyui_manager" / NODE_MAP
    record = describe_manager_file(str(gone), tmp_path)
    assert record is not None and (record.path, record.source, record.version) == (gone, "comfyui_env", None)


def test_maps_used_is_what_master_status_stores(tmp_path: Path, no_tool_manager: None) -> None:
    node_map = _clone(tmp_path, v4=True, version="4.0")
    maps = maps_used(str(node_map), None, tmp_path)
    assert maps == {"node_map": {"path": str(node_map), "source": "custom_nodes", "version": "4.0"}, "model_list": None}
    assert json.loads(json.dumps(maps)) == maps


def test_finding_a_path_reads_no_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """find_manager_file gives the path locate_manager_file finds, without reading any Manager version (the
    warm cycle asks for the path twice; only the report records the version)."""
    clone = _clone(tmp_path, version="3.41")
    site = tmp_path / "tool-site"
    tool = _pip_install(site, "9.9")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("comfyui_manager", None)
    read: list[str] = []
    monkeypatch.setattr(manager_files, "_clone_version", lambda clone: read.append("clone") or "x")
    monkeypatch.setattr(manager_files, "_tool_env_version", lambda: read.append("tool") or "x")
    assert find_manager_file(tmp_path, NODE_MAP) == clone
    root = tmp_path / "ComfyUI"
    root.mkdir()
    unversioned = locate_manager_file(root, NODE_MAP, versioned=False)
    assert unversioned == manager_files.ManagerFile(tool, "tool_env", None)
    assert find_manager_file(root, NODE_MAP) == tool
    assert read == []
    assert locate_manager_file(root, NODE_MAP) == manager_files.ManagerFile(tool, "tool_env", "x")
    assert read == ["tool"]


def test_a_package_without_metadata_beside_it_is_versioned_by_importlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The METADATA beside the package is read; an install without one there (an editable one: the package in
    a source folder, the dist-info in site-packages) is asked of importlib.metadata."""
    source, site = tmp_path / "src", tmp_path / "site"
    expected = _pip_install(source, "7.7")
    shutil.rmtree(source / "comfyui_manager-7.7.dist-info")
    _write(site / "comfyui_manager-7.8.dist-info" / "METADATA", "Name: comfyui-manager\nVersion: 7.8\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(source))
    sys.modules.pop("comfyui_manager", None)
    root = tmp_path / "ComfyUI"
    root.mkdir()
    assert locate_manager_file(root, NODE_MAP) == manager_files.ManagerFile(expected, "tool_env", "7.8")
