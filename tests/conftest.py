"""Shared fixtures: temporary ComfyUI trees on disk and the real CLI in a subprocess."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# ``tests.fakes`` and ``tests.helpers`` are imported as packages from the repository root.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers.comfy_tree import ComfyTree  # noqa: E402


@pytest.fixture
def comfy_tree(tmp_path: Path) -> ComfyTree:
    """Return an empty ComfyUI install under ``tmp_path/ComfyUI`` to fill per test."""
    return ComfyTree(tmp_path / "ComfyUI")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Return an empty comfywatchman home folder (state/, output/, log/ go there)."""
    path = tmp_path / "home"
    path.mkdir()
    return path
