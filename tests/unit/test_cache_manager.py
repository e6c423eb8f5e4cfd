"""The install caches on real files: the model cache rewritten only when the install changed, and the same
whether the model folders were walked by the cache stage or ahead of it, as the cycle's process started."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from comfywatchman import cache_manager
from tests.helpers.model_files import loras_tree


def _install(root: Path) -> Path:
    loras_tree(root / "models")
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
