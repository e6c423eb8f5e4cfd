"""Preflight: a root that is no ComfyUI install and a home that cannot be written are named in one line."""

from __future__ import annotations

from pathlib import Path

from comfywatchman import resources
from comfywatchman.config import load
from comfywatchman.preflight import comfyui_root_problem, home_problem, problem
from tests.helpers.comfy_tree import ComfyTree


def test_the_demo_install_and_a_test_tree_are_installs(comfy_tree: ComfyTree) -> None:
    assert comfyui_root_problem(resources.DEMO_COMFYUI_ROOT) is None
    assert comfyui_root_problem(comfy_tree.root) is None


def test_one_mark_is_enough(tmp_path: Path) -> None:
    (tmp_path / "custom_nodes").mkdir()
    assert comfyui_root_problem(tmp_path) is None


def test_a_missing_root_is_named_with_the_likely_cause(tmp_path: Path) -> None:
    message = comfyui_root_problem(tmp_path / "mnt" / "ComfyUI")
    assert message is not None
    assert message.startswith(f"{tmp_path / 'mnt' / 'ComfyUI'}: ComfyUI root does not exist")
    assert "not mounted" in message and "--comfyui-root" in message


def test_an_empty_folder_is_an_unmounted_drive_not_an_install(tmp_path: Path) -> None:
    message = comfyui_root_problem(tmp_path)
    assert message == (
        f"{tmp_path}: not a ComfyUI install: it is empty (a drive that is not mounted?); "
        "set comfyui.root, COMFYUI_ROOT or --comfyui-root"
    )


def test_a_folder_without_marks_and_a_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert "has no models/ or custom_nodes/ folder" in (comfyui_root_problem(tmp_path) or "")
    assert "is not a folder" in (comfyui_root_problem(tmp_path / "notes.txt") or "")


def test_the_portable_builds_outer_folder_points_to_the_inner_one(tmp_path: Path) -> None:
    ComfyTree(tmp_path / "ComfyUI")
    message = comfyui_root_problem(tmp_path) or ""
    assert f"but {tmp_path / 'ComfyUI'} is one" in message


def test_a_writable_home_passes_and_gets_its_folders(comfy_tree: ComfyTree, tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    config = load(env={}, flags={"comfyui_root": comfy_tree.root, "home": home}, cwd=tmp_path)
    assert problem(config) is None
    assert (home / "state").is_dir() and (home / "log").is_dir()
    assert list((home / "state").iterdir()) == []  # the probe file is gone


def test_a_home_below_a_file_names_the_file(comfy_tree: ComfyTree, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    config = load(env={}, flags={"comfyui_root": comfy_tree.root, "home": blocker / "home"}, cwd=tmp_path)
    message = home_problem(config) or ""
    assert message.startswith(f"{blocker}: is a file, so the folder {blocker / 'home' / 'state'} cannot be made")
    assert "--home" in message


def test_a_file_named_like_a_home_folder_is_named(comfy_tree: ComfyTree, tmp_path: Path) -> None:
    (tmp_path / "log").write_text("not a folder")
    config = load(env={}, flags={"comfyui_root": comfy_tree.root, "home": tmp_path}, cwd=tmp_path)
    assert (home_problem(config) or "").startswith(f"{tmp_path / 'log'}: is a file")


def test_the_root_is_checked_before_the_home_is_touched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = load(env={}, flags={"comfyui_root": tmp_path / "gone", "home": home}, cwd=tmp_path)
    assert "does not exist" in (problem(config) or "")
    assert not home.exists()
