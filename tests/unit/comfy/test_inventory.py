"""The installed side: model lookups by index, node states from core, packs, the Manager map and the frontend."""

from __future__ import annotations

from typing import Any

from comfywatchman.comfy.inventory import ModelIndex, NodeIndex
from comfywatchman.comfy.manager_map import NodeMap, PackCandidate
from comfywatchman.workflow.embeddings import LOOKUP_SUFFIXES


def model_cache(folders: dict[str, tuple[list[str], list[str]]]) -> dict[str, Any]:
    return {
        "folders": {
            f: {"paths": paths, "files": [{"name": n, "dir": 0, "size": 0} for n in files]}
            for f, (paths, files) in folders.items()
        }
    }


INDEX = ModelIndex.from_cache(
    model_cache(
        {
            "checkpoints": (
                ["/c/models/checkpoints", "/mnt/shared/ckpt"],
                ["SDXL/juggernaut.safetensors", "base.safetensors"],
            ),
            "loras": (["/c/models/loras"], ["a/style.safetensors", "b/style.safetensors"]),
            "embeddings": (["/c/models/embeddings"], ["EasyNegative.safetensors", "sub/neg.pt"]),
        }
    ),
    case_insensitive=False,
)


def test_find_matches_windows_separators_and_subfolders() -> None:
    match = INDEX.find("SDXL\\juggernaut.safetensors", "checkpoints")
    assert match.installed and match.installed_as == "SDXL/juggernaut.safetensors"
    assert match.looked_in == ["/c/models/checkpoints", "/mnt/shared/ckpt"]


def test_find_reports_case_difference_where_comfyui_is_case_sensitive() -> None:
    match = INDEX.find("BASE.safetensors", "checkpoints")
    assert not match.installed and "letter case" in match.note
    insensitive = ModelIndex.from_cache(
        model_cache({"checkpoints": (["/c"], ["base.safetensors"])}), case_insensitive=True
    )
    assert insensitive.find("BASE.safetensors", "checkpoints").installed


def test_find_points_at_other_subfolder_and_ambiguity() -> None:
    moved = INDEX.find("juggernaut.safetensors", "checkpoints")
    assert not moved.installed and moved.installed_as == "SDXL/juggernaut.safetensors"
    assert "2 files" in INDEX.find("style.safetensors", "loras").note


def test_find_unknown_folder_searches_every_folder() -> None:
    assert INDEX.find("base.safetensors", None).installed
    assert "no 'ipadapter' folder" in INDEX.find("x.bin", "ipadapter").note


def test_find_embedding_tries_comfyui_suffixes() -> None:
    assert INDEX.find("EasyNegative", "embeddings", LOOKUP_SUFFIXES).installed_as == "EasyNegative.safetensors"
    assert INDEX.find("sub/neg", "embeddings", LOOKUP_SUFFIXES).installed
    assert not INDEX.find("EasyNegative", "embeddings").installed


def _node_map() -> NodeMap:
    node_map = NodeMap(source="map.json")
    kj = PackCandidate("https://github.com/kijai/ComfyUI-KJNodes", "KJNodes")
    impact = PackCandidate("https://github.com/ltdrdata/ComfyUI-Impact-Pack", "Impact Pack")
    other = PackCandidate("https://github.com/someone/Other-Pack", "Other")
    node_map.add_repo(kj.repo, ["ImageResizeKJ", "DynamicThing"])
    node_map.add_repo(impact.repo, ["FaceDetailer", "SAMLoader"])
    node_map.add_repo(other.repo, ["FaceDetailer"])
    for name, cands in {
        "ImageResizeKJ": [kj],
        "DynamicThing": [kj],
        "FaceDetailer": [impact, other],
        "SAMLoader": [impact],
    }.items():
        node_map.by_name[name] = cands
    return node_map


def _pack(name: str, types: list[str], enabled: bool = True, remote: str | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "folder": name,
        "path": f"/c/custom_nodes/{name}",
        "enabled": enabled,
        "disabled_by": None if enabled else "suffix",
        "node_types": types,
        "version": None,
        "git_remote": remote,
        "problems": [],
    }


def test_node_state_uses_manager_map_for_installed_pack_by_remote_or_folder() -> None:
    cache = {
        "packs": [
            _pack("kjnodes-renamed", [], remote="git@github.com:kijai/ComfyUI-KJNodes.git"),
            _pack("ComfyUI-Impact-Pack", ["FaceDetailer"]),
        ]
    }
    index = NodeIndex.from_cache(cache, _node_map(), core=frozenset({"KSampler"}))
    assert index.state("DynamicThing").state == "installed"  # built at import time, listed by the Manager map
    assert index.state("SAMLoader").packs == [{"name": "ComfyUI-Impact-Pack", "installed": True}]
    assert index.state("KSampler").state == "core"
    assert index.state("Note").state == "frontend"


def test_node_state_frontend_only_pack_nodes_follow_their_pack() -> None:
    installed = NodeIndex.from_cache(
        {"packs": [_pack("ComfyUI-KJNodes", ["ImageResizeKJ"])]}, _node_map(), core=frozenset()
    )
    assert installed.state("SetNode").state == "frontend"
    absent = NodeIndex.from_cache({"packs": []}, _node_map(), core=frozenset())
    state = absent.state("GetNode")
    assert state.state == "missing" and state.packs[0]["repo"].lower().endswith("kijai/comfyui-kjnodes")
    assert state.packs[0]["install"].startswith("git clone ")


def test_node_state_disabled_pack_and_every_candidate() -> None:
    cache = {"packs": [_pack("Old", ["OldNode"], enabled=False)]}
    index = NodeIndex.from_cache(cache, _node_map(), core=frozenset())
    disabled = index.state("OldNode")
    assert (disabled.state, disabled.packs[0]["name"], disabled.packs[0]["disabled"]) == ("disabled", "Old", True)
    missing = index.state("FaceDetailer")
    assert missing.state == "missing"
    assert [p["title"] for p in missing.packs] == ["Impact Pack", "Other"]
    assert index.state("NobodyHasThis").packs == []
