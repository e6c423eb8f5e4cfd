"""Where ComfyUI-Manager's data files are: the user's Manager install first, else the ``comfyui-manager``
Python package (installed ``--no-deps`` by ``make install``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

MANAGER_FOLDERS = ("ComfyUI-Manager", "comfyui-manager")


def find_manager_file(comfyui_root: Path, name: str) -> Path | None:
    """Return the path of Manager's ``name`` (e.g. ``model-list.json``) for ``comfyui_root``, or None."""
    for folder in MANAGER_FOLDERS:
        candidate = comfyui_root / "custom_nodes" / folder / name
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec("comfyui_manager")
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / name
        if candidate.is_file():
            return candidate
    return None
