"""The model walk of the cache on real files: listing folders by descriptor (POSIX) or by path (elsewhere)
finds the same files and sizes, follows linked folders once, and sees a file rewritten in place."""

from __future__ import annotations

from datetime import datetime, timezone
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
    return [{"name": name, "dir": 0, "size": size} for name, size in cache_manager._walk_pairs(folder, "loras")]


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
    folder = _tree(tmp_path)
    _walk(folder, True, monkeypatch)
    (folder / "SDXL" / "new.safetensors").write_bytes(b"x" * 7)
    (folder / "a.safetensors").unlink()
    for by_descriptor in (True, False):
        sizes = {f["name"]: f["size"] for f in _walk(folder, by_descriptor, monkeypatch)}
        assert sizes == {"SDXL/b.SAFETENSORS": 20, "SDXL/deep/c.pt": 30, "SDXL/new.safetensors": 7}


def _install(root: Path) -> Path:
    _tree(root / "models")
    (root / "models" / "checkpoints").mkdir()
    (root / "models" / "checkpoints" / "base.safetensors").write_bytes(b"x" * 40)
    (root / "custom_nodes").mkdir()
    return root / "models" / "loras"


def _refresh(root: Path, state: Path) -> cache_manager.CacheOutcome:
    state.mkdir(parents=True, exist_ok=True)
    return cache_manager.refresh(root, state, datetime(2026, 1, 1, tzinfo=timezone.utc))


def test_the_model_cache_is_kept_when_unchanged_and_rewritten_as_made_fresh(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    loras = _install(root)
    state = tmp_path / "state"
    assert _refresh(root, state).models_written
    kept = state / "model_cache.json"
    before = kept.stat().st_mtime_ns
    assert not _refresh(root, state).models_written
    assert kept.stat().st_mtime_ns == before
    for change in (
        lambda: (loras / "SDXL" / "b.SAFETENSORS").write_bytes(b"x" * 5),  # resized in place
        lambda: (loras / "SDXL" / "deep" / "d.safetensors").write_bytes(b"x"),  # new file, old folder
        lambda: (loras / "a.safetensors").unlink(),  # removed
    ):
        change()
        assert _refresh(root, state).models_written
        fresh = tmp_path / f"fresh{before}"
        _refresh(root, fresh)
        assert kept.read_bytes() == (fresh / "model_cache.json").read_bytes()
        before += 1
