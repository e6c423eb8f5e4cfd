"""Node types of packs read statically from NODE_CLASS_MAPPINGS, never by importing the pack."""

from __future__ import annotations

from pathlib import Path

from comfywatchman.comfy.custom_nodes import list_packs


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_list_packs_reads_literals_updates_and_submodule_mappings(tmp_path: Path) -> None:
    custom = tmp_path / "custom_nodes"
    write(custom / "Literal" / "__init__.py", 'NODE_CLASS_MAPPINGS = {"A": object, "B": object}\n')
    write(
        custom / "Updating" / "__init__.py",
        "from .nodes import NODE_CLASS_MAPPINGS as N\nNODE_CLASS_MAPPINGS = {**N}\n"
        "NODE_CLASS_MAPPINGS.update({'C': 1})\nif True:\n    NODE_CLASS_MAPPINGS['D'] = 2\n",
    )
    write(custom / "Updating" / "nodes.py", "class X: pass\nNODE_CLASS_MAPPINGS = dict(E=X)\n")
    write(custom / "Updating" / "helpers.py", "import os\n")
    write(custom / "Broken" / "__init__.py", "NODE_CLASS_MAPPINGS = {\n")
    write(custom / "Off.disabled" / "__init__.py", 'NODE_CLASS_MAPPINGS = {"F": 1}\n')
    write(custom / "single.py", 'NODE_CLASS_MAPPINGS = {"G": 1}\n')
    packs = {p.name: p for p in list_packs(custom)}
    assert packs["Literal"].node_types == ["A", "B"]
    assert packs["Updating"].node_types == ["C", "D", "E"]
    assert packs["Broken"].problems and "cannot parse" in packs["Broken"].problems[0]
    assert (packs["Off"].enabled, packs["Off"].disabled_by, packs["Off"].node_types) == (False, "suffix", ["F"])
    assert packs["single"].node_types == ["G"]


def test_list_packs_reads_git_remote(tmp_path: Path) -> None:
    pack = tmp_path / "custom_nodes" / "KJ"
    write(pack / "__init__.py", "NODE_CLASS_MAPPINGS = {}\n")
    write(pack / ".git" / "config", '[remote "origin"]\n\turl = https://github.com/kijai/ComfyUI-KJNodes.git\n')
    assert list_packs(tmp_path / "custom_nodes")[0].git_remote == "https://github.com/kijai/ComfyUI-KJNodes.git"
