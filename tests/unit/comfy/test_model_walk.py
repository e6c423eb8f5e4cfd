"""The walk of one model folder on real files: listing folders by descriptor (POSIX) or by path (elsewhere)
finds the same files and sizes, follows linked folders once, and sees a file rewritten in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfywatchman.comfy import folders, model_walk
from tests.helpers.model_files import loras_tree


def _walk(folder: Path, by_descriptor: bool, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr(model_walk, "_BY_DESCRIPTOR", by_descriptor)
    return [
        {"name": name, "dir": 0, "size": size}
        for name, size in model_walk.walk_pairs(folder, folders.suffixes_of("loras"))
    ]


def test_both_ways_of_listing_find_the_same_files_and_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = loras_tree(tmp_path)
    expected = [
        {"name": "SDXL/b.SAFETENSORS", "dir": 0, "size": 20},
        {"name": "SDXL/deep/c.pt", "dir": 0, "size": 30},
        {"name": "a.safetensors", "dir": 0, "size": 10},
    ]
    assert _walk(folder, True, monkeypatch) == expected
    assert _walk(folder, False, monkeypatch) == expected


def test_a_file_rewritten_in_place_shows_its_new_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = loras_tree(tmp_path)
    _walk(folder, True, monkeypatch)
    with open(folder / "a.safetensors", "r+b") as handle:  # same inode, same folder listing: a truncated download
        handle.truncate(3)
    sizes = {f["name"]: f["size"] for f in _walk(folder, True, monkeypatch)}
    assert sizes["a.safetensors"] == 3


def test_a_folder_that_cannot_be_listed_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _walk(tmp_path / "missing", True, monkeypatch) == []
    assert _walk(tmp_path / "missing", False, monkeypatch) == []


def test_files_are_sorted_by_their_whole_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "loras"
    for name in ("a.b/x.pt", "a.b.pt", "a/z.pt", "a0.pt", "B.pt", "a.b/w.pt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    for by_descriptor in (True, False):
        names = [f["name"] for f in _walk(folder, by_descriptor, monkeypatch)]
        assert names == ["B.pt", "a.b.pt", "a.b/w.pt", "a.b/x.pt", "a/z.pt", "a0.pt"]


def test_a_new_file_in_an_old_folder_and_a_removed_one_are_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = loras_tree(tmp_path)
    _walk(folder, True, monkeypatch)
    (folder / "SDXL" / "new.safetensors").write_bytes(b"x" * 7)
    (folder / "a.safetensors").unlink()
    for by_descriptor in (True, False):
        sizes = {f["name"]: f["size"] for f in _walk(folder, by_descriptor, monkeypatch)}
        assert sizes == {"SDXL/b.SAFETENSORS": 20, "SDXL/deep/c.pt": 30, "SDXL/new.safetensors": 7}
