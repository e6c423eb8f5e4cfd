"""The model walk of the cache on real files: listing folders by descriptor (POSIX) or by path (elsewhere)
finds the same files and sizes, follows linked folders once, and sees a file rewritten in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfywatchman import cache_manager


def _tree(root: Path) -> Path:
    folder = root / "loras"
    (folder / "SDXL" / "deep").mkdir(parents=True)
    (folder / "a.safetensors").write_bytes(b"x" * 10)
    (folder / "SDXL" / "b.SAFETENSORS").write_bytes(b"x" * 20)
    (folder / "SDXL" / "deep" / "c.pt").write_bytes(b"x" * 30)
    (folder / "notes.txt").write_text("not a model", encoding="utf-8")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "h.safetensors").write_bytes(b"x")
    (folder / "SDXL" / "loop").symlink_to(folder)  # walked once
    (folder / "gone.safetensors").symlink_to(root / "nowhere.safetensors")  # broken: not a model file
    return folder


def _walk(folder: Path, by_descriptor: bool, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr(cache_manager, "_BY_DESCRIPTOR", by_descriptor)
    return cache_manager._walk_files(folder, 0, "loras")


def test_both_ways_of_listing_find_the_same_files_and_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _tree(tmp_path)
    expected = [
        {"name": "SDXL/b.SAFETENSORS", "dir": 0, "size": 20},
        {"name": "SDXL/deep/c.pt", "dir": 0, "size": 30},
        {"name": "a.safetensors", "dir": 0, "size": 10},
    ]
    assert _walk(folder, True, monkeypatch) == expected
    assert _walk(folder, False, monkeypatch) == expected


def test_a_file_rewritten_in_place_shows_its_new_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _tree(tmp_path)
    _walk(folder, True, monkeypatch)
    with open(folder / "a.safetensors", "r+b") as handle:  # same inode, same folder listing: a truncated download
        handle.truncate(3)
    sizes = {f["name"]: f["size"] for f in _walk(folder, True, monkeypatch)}
    assert sizes["a.safetensors"] == 3


def test_a_folder_that_cannot_be_listed_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _walk(tmp_path / "missing", True, monkeypatch) == []
    assert _walk(tmp_path / "missing", False, monkeypatch) == []
