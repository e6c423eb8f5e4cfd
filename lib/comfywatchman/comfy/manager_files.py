"""Where ComfyUI-Manager's data files (``extension-node-map.json``, ``model-list.json``) are, and which Manager.

Looked up in this order, the first location holding the file wins:

1. ``custom_nodes``: the user's Manager clone, ``<root>/custom_nodes/ComfyUI-Manager`` (or ``comfyui-manager``),
   with the files at its top (Manager 3.x) or in its ``comfyui_manager/`` package folder (Manager 4.x).
2. ``comfyui_env``: the ``comfyui_manager`` package in ComfyUI's own Python environment, where recent ComfyUI
   installs it with pip: ``<root>/venv``, ``<root>/.venv`` (ComfyUI Desktop), or the portable build's
   ``python_embeded`` beside the root.
3. ``tool_env``: the ``comfyui_manager`` package importable here (``pip install 'comfywatchman[manager]'``, or
   ``make install``, which installs it ``--no-deps``).

The version is read where it is written down: a clone's ``pyproject.toml``, a pip install's ``METADATA``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman.comfy import pyproject

logger = logging.getLogger(__name__)

MANAGER_FOLDERS = ("ComfyUI-Manager", "comfyui-manager")
PACKAGE = "comfyui_manager"
# Python environments ComfyUI runs in, relative to its root: venvs made in the root, the portable build's.
ENV_FOLDERS = ("venv", ".venv", "../python_embeded")
SOURCES = ("custom_nodes", "comfyui_env", "tool_env")
# The curated model list (``search.model_list``), named here for what checks its stat without importing that.
MODEL_LIST = "model-list.json"


# A NamedTuple, not a frozen dataclass: a cycle's process creates it at import, and a dataclass costs it ~0.4 ms
# to make (Python 3.11).
class ManagerFile(NamedTuple):
    """One of Manager's data files as found: where, from which kind of install, which Manager version."""

    path: Path
    source: str  # one of SOURCES
    version: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the record as master_status.json stores it."""
        return {"path": str(self.path), "source": self.source, "version": self.version}


def _clone_version(clone: Path) -> str | None:
    """Return ``[project] version`` of a Manager clone's ``pyproject.toml``, or None when it cannot be read."""
    try:
        version = pyproject.project_table(clone / "pyproject.toml").get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def _dist_version(site_packages: Path) -> str | None:
    """Return the version in ``comfyui_manager-*.dist-info/METADATA`` under ``site_packages``, or None."""
    for info in sorted(site_packages.glob("comfyui_manager-*.dist-info")):
        try:
            text = (info / "METADATA").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        match = re.search(r"^Version:\s*(\S+)", text, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def _site_packages(env: Path) -> Iterator[Path]:
    """Yield the site-packages folders of the Python environment ``env`` (POSIX venv, Windows venv or embedded)."""
    yield from sorted(env.glob("lib/python3*/site-packages"))
    yield env / "Lib" / "site-packages"


def _from_custom_nodes(comfyui_root: Path, name: str, versioned: bool = True) -> ManagerFile | None:
    """Return ``name`` from a Manager clone in ``custom_nodes`` (its version read when ``versioned``), or None."""
    for folder in MANAGER_FOLDERS:
        clone = comfyui_root / "custom_nodes" / folder
        for candidate in (clone / name, clone / PACKAGE / name):
            if candidate.is_file():
                return ManagerFile(candidate, "custom_nodes", _clone_version(clone) if versioned else None)
    return None


def _from_comfyui_env(comfyui_root: Path, name: str, versioned: bool = True) -> ManagerFile | None:
    """Return ``name`` from the ``comfyui_manager`` package of ComfyUI's own Python environment (its version
    read when ``versioned``), or None."""
    for env in ENV_FOLDERS:
        for site_packages in _site_packages((comfyui_root / env).resolve()):
            candidate = site_packages / PACKAGE / name
            if candidate.is_file():
                return ManagerFile(candidate, "comfyui_env", _dist_version(site_packages) if versioned else None)
    return None


def _from_tool_env(name: str, versioned: bool = True) -> ManagerFile | None:
    """Return ``name`` from the ``comfyui_manager`` package importable in this tool's environment (its version
    read when ``versioned``), or None."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(next(iter(spec.submodule_search_locations))) / name
    if not candidate.is_file():
        return None
    return ManagerFile(candidate, "tool_env", _tool_env_version() if versioned else None)


def _tool_env_version() -> str | None:
    """Return the version of the ``comfyui-manager`` distribution installed here, or None."""
    # A pip install puts its METADATA beside the package, read as in ComfyUI's environment: importlib.metadata
    # (~4 ms to import with the email parser it reads METADATA with, ~2 ms to scan every distribution for this
    # one) only for an install that has none there (an editable one). Only the report asks for the version.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        found = _dist_version(Path(next(iter(spec.submodule_search_locations))).parent)
        if found is not None:
            return found
    from importlib import metadata

    try:
        return metadata.version("comfyui-manager")
    except metadata.PackageNotFoundError:
        return None


def locate_manager_file(comfyui_root: Path, name: str, versioned: bool = True) -> ManagerFile | None:
    """Return Manager's ``name`` (e.g. ``model-list.json``) for ``comfyui_root`` with where it came from (and
    which Manager version, when ``versioned``; else None), or None."""
    found = (
        _from_custom_nodes(comfyui_root, name, versioned)
        or _from_comfyui_env(comfyui_root, name, versioned)
        or _from_tool_env(name, versioned)
    )
    if found is None:
        logger.debug("%s: not in %s's custom_nodes, its Python environment or this one", name, comfyui_root)
    return found


def find_manager_file(comfyui_root: Path, name: str) -> Path | None:
    """Return the path of Manager's ``name`` (e.g. ``model-list.json``) for ``comfyui_root``, or None."""
    found = locate_manager_file(comfyui_root, name, versioned=False)  # the path alone: no version to read
    return found.path if found else None


def describe_manager_file(path: str | None, comfyui_root: Path) -> ManagerFile | None:
    """Return the record of a Manager file a stage used (``path`` as it wrote it down), or None for None.

    Source and version come from looking the file up again; when that lookup lands elsewhere now (the install
    changed since the stage ran), the source is judged by the path's place and the version is unknown.
    """
    if path is None:
        return None
    used = Path(path)
    found = locate_manager_file(comfyui_root, used.name)
    if found is not None and found.path == used:
        return found
    return ManagerFile(used, _source_of(used, comfyui_root), None)


def _source_of(path: Path, comfyui_root: Path) -> str:
    """Return the kind of install a Manager file's ``path`` lies in, judged by its place alone."""
    if (comfyui_root / "custom_nodes") in path.parents:
        return "custom_nodes"
    if any((comfyui_root / env).resolve() in path.parents for env in ENV_FOLDERS):
        return "comfyui_env"
    return "tool_env"


def maps_used(node_map: str | None, model_list: str | None, comfyui_root: Path) -> dict[str, Any]:
    """Return master_status.json's ``manager_maps``: the node map scan used and the model list search used."""
    records = {
        "node_map": describe_manager_file(node_map, comfyui_root),
        "model_list": describe_manager_file(model_list, comfyui_root),
    }
    return {key: record.to_json() if record else None for key, record in records.items()}
