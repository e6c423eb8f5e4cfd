"""The real CLI on a ComfyUI whose own Manager (4.x clone layout) holds the node map: used, and the report says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfywatchman import artifacts
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow

pytestmark = pytest.mark.slow

REPO_URL = "https://github.com/someone/comfyui-fancy"


def test_cycle_uses_the_managers_map_in_custom_nodes_and_reports_it(tmp_path: Path, home: Path) -> None:
    tree = ComfyTree(tmp_path / "ComfyUI")
    clone = tree.root / "custom_nodes" / "ComfyUI-Manager"
    (clone / "comfyui_manager").mkdir(parents=True)
    (clone / "pyproject.toml").write_text('[project]\nname = "comfyui-manager"\nversion = "4.0.1"\n', encoding="utf-8")
    node_map = clone / "comfyui_manager" / "extension-node-map.json"
    node_map.write_text(json.dumps({REPO_URL: [["FancySampler"], {"title_aux": "Fancy"}]}), encoding="utf-8")
    tree.workflow("fancy.json", ui_workflow([ui_node(1, "FancySampler", [])]))

    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(tree.root), home=home)

    assert result.returncode == 0, result.stderr
    reports = home / "output" / "reports" / "status"
    report = artifacts.read(reports / "master_status.json", "master_status")
    assert report["manager_maps"]["node_map"] == {"path": str(node_map), "source": "custom_nodes", "version": "4.0.1"}
    assert any(a["kind"] == "install_pack" and REPO_URL in (a["detail"] or "") for a in report["actions"]), report
    assert f"node map `{node_map}` (custom_nodes 4.0.1)" in (reports / "master_status.md").read_text(encoding="utf-8")
