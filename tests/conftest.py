"""Shared fixtures: temporary ComfyUI trees on disk and the real CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.comfy_tree import ComfyTree


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
