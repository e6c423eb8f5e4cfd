"""pyproject: the [project] table of a pack's or ComfyUI-Manager's pyproject.toml, read as a regular file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfywatchman.comfy import pyproject


def test_the_project_table_or_an_empty_one(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text('[project]\nname = "comfyui-pack"\nversion = "1.2.0"\n', encoding="utf-8")
    assert pyproject.project_table(path) == {"name": "comfyui-pack", "version": "1.2.0"}
    path.write_text("[tool.x]\ny = 1\n", encoding="utf-8")
    assert pyproject.project_table(path) == {}
    path.write_text('project = "not a table"\n', encoding="utf-8")
    assert pyproject.project_table(path) == {}


def test_what_cannot_be_read_as_toml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(b'[project]\nname = "\xff"\n')
    with pytest.raises(ValueError):
        pyproject.project_table(path)
    path.write_text("[project\n", encoding="utf-8")
    with pytest.raises(ValueError):
        pyproject.project_table(path)
    with pytest.raises(FileNotFoundError):
        pyproject.project_table(tmp_path / "missing.toml")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    os.mkfifo(path)
    with pytest.raises(OSError, match="named pipe"):
        pyproject.project_table(path)
