"""The bound on one model folder's walk: a typo such as ``base_path: /`` must not index the whole disk."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from comfywatchman import artifacts, cache_manager
from comfywatchman.comfy import folders
from comfywatchman.comfy.walk_bound import WalkBound, problem_line

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_admit_gives_what_room_is_left_and_says_why_it_stopped() -> None:
    bound = WalkBound(max_depth=3, max_entries=5)
    assert bound.admit([1, 2, 3]) == [1, 2, 3] and bound.reason is None and bound.room_for_more()
    assert bound.admit([4, 5, 6, 7]) == [4, 5]
    assert not bound.room_for_more() and bound.entries == 5
    assert bound.reason == "stopped after 5 files and folders (model_walk_max_entries)"
    assert bound.admit([8]) == []


def test_a_walk_that_fills_the_bound_exactly_with_folders_left_says_so() -> None:
    bound = WalkBound(max_depth=3, max_entries=2)
    assert bound.admit(["a", "b"]) == ["a", "b"] and bound.reason is None
    assert not bound.room_for_more()
    assert bound.reason == "stopped after 2 files and folders (model_walk_max_entries)"


def test_may_enter_counts_levels_below_the_model_folder() -> None:
    bound = WalkBound(max_depth=2, max_entries=100)
    assert bound.may_enter("a") and bound.may_enter("a/b")
    assert bound.reason is None
    assert not bound.may_enter("a/b/c")
    assert bound.reason == "folders deeper than 2 levels not walked (model_walk_max_depth)"


def fake_disk(top: Path, folders_per_level: int, depth: int) -> int:
    """Write a deep, wide tree of model-looking files under ``top``; return how many files."""
    count = 0
    level = [top]
    for _ in range(depth):
        following = []
        for folder in level:
            for index in range(folders_per_level):
                sub = folder / f"d{index}"
                sub.mkdir(parents=True)
                (sub / f"m{index}.safetensors").write_bytes(b"")
                count += 1
                following.append(sub)
        level = following
    return count


def test_a_base_path_typo_is_walked_within_bounds_and_named(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    files = fake_disk(disk, folders_per_level=4, depth=5)
    assert files > 1000
    root = tmp_path / "ComfyUI"
    (root / "models" / "checkpoints").mkdir(parents=True)
    (root / "models" / "checkpoints" / "real.safetensors").write_bytes(b"")
    yaml_file = root / "extra_model_paths.yaml"
    # The user meant base_path: /mnt/ai (a typo makes it the top of the disk) and checkpoints: . under it.
    yaml_file.write_text(f"comfyui:\n  base_path: {disk}\n  checkpoints: .\n")
    document = cache_manager.build_model_cache(root, [], False, NOW, bounds=(12, 300))
    artifacts.validate(document, "model_cache", "model_cache.json")
    assert document["walk_limits"] == [
        {
            "folder": "checkpoints",
            "path": str(disk),
            "config": str(yaml_file),
            "section": "comfyui",
            "reason": "stopped after 300 files and folders (model_walk_max_entries)",
            "entries": 300,
        }
    ]
    assert document["problems"] == [problem_line(document["walk_limits"][0])]
    assert f"{yaml_file}: section 'comfyui': checkpoints folder {disk}: stopped after 300" in document["problems"][0]
    names = [f["name"] for f in document["folders"]["checkpoints"]["files"]]
    assert "real.safetensors" in names  # the install's own folder is walked whole
    assert len(names) < 300
    # Within the bound, nothing is reported and every file is found.
    whole = cache_manager.build_model_cache(root, [], False, NOW, bounds=(12, 100_000))
    assert whole["walk_limits"] == [] and whole["problems"] == []
    assert len(whole["folders"]["checkpoints"]["files"]) == files + 1


def test_the_depth_bound_stops_descending_and_says_so(tmp_path: Path) -> None:
    models = tmp_path / "models"
    fake_disk(models / "loras", folders_per_level=1, depth=6)
    paths = folders.ModelPaths()
    paths.add("loras", models / "loras")
    limits: list[dict[str, object]] = []
    grouped = cache_manager.scan_model_files(paths, (3, 1000), limits)
    assert sorted(f["name"].count("/") for f in grouped["loras"]["files"]) == [1, 2, 3]
    assert limits == [
        {
            "folder": "loras",
            "path": str(models / "loras"),
            "config": None,
            "section": None,
            "reason": "folders deeper than 3 levels not walked (model_walk_max_depth)",
            "entries": 7,
        }
    ]
    assert problem_line(limits[0]).startswith(f"{models / 'loras'} (loras): folders deeper than 3 levels")
