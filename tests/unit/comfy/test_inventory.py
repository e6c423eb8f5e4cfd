"""The installed side: model lookups by index, node states from core, packs, the Manager map and the frontend."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comfywatchman.comfy import manager_map
from comfywatchman.comfy.inventory import NOT_FOUND_IN_PACK, NOT_LOADED, ModelIndex, NodeIndex
from comfywatchman.comfy.manager_map import NodeMap, PackCandidate
from comfywatchman.comfy.server import ServerTruth
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


def _map_file(tmp_path: Path, entries: dict[str, Any]) -> NodeMap:
    path = tmp_path / "extension-node-map.json"
    path.write_text(json.dumps(entries), encoding="utf-8")
    return manager_map.load(path)


RGTHREE = "https://github.com/rgthree/rgthree-comfy"


def test_an_installed_packs_manager_pattern_counts_as_what_it_provides(tmp_path: Path) -> None:
    node_map = _map_file(
        tmp_path,
        {
            RGTHREE: [[], {"nodename_pattern": " \\(rgthree\\)$", "title_aux": "rgthree"}],
            "https://github.com/greedy/Everything": [[], {"nodename_pattern": ".*"}],
        },
    )
    on = NodeIndex.from_cache({"packs": [_pack("rgthree-comfy", [], remote=RGTHREE + ".git")]}, node_map)
    assert on.state("Seed (rgthree)").packs == [{"name": "rgthree-comfy", "installed": True}]
    off = NodeIndex.from_cache({"packs": [_pack("rgthree-comfy", [], enabled=False)]}, node_map)
    assert off.state("Seed (rgthree)").state == "disabled"
    absent = NodeIndex.from_cache({"packs": []}, node_map).state("Seed (rgthree)")
    assert absent.state == "missing" and absent.packs[0]["repo"] == RGTHREE and absent.packs[0]["by_pattern"]
    # a pattern that claims nearly anything proves nothing, installed or not
    greedy = NodeIndex.from_cache({"packs": [_pack("Everything", [])]}, node_map).state("Anything At All")
    assert greedy.state == "missing" and not any(p["installed"] for p in greedy.packs)
    # with a server, its answer decides; the pack that should have it is named, never to be installed
    truth = ServerTruth("http://127.0.0.1:8188", modules={"KSampler": "nodes"})
    loaded = NodeIndex.from_cache({"packs": [_pack("rgthree-comfy", [], remote=RGTHREE)]}, node_map, server=truth)
    assert loaded.state("Seed (rgthree)").packs == [{"name": "rgthree-comfy", "installed": True, "note": NOT_LOADED}]


def test_the_workflows_word_names_the_pack_before_the_map_claimants() -> None:
    index = NodeIndex.from_cache({"packs": [_pack("Old", [], enabled=False)]}, _node_map(), core=frozenset())
    # FaceDetailer is claimed by two packs; the node says which one it was made with
    named = index.state("FaceDetailer", {"cnr_id": "comfyui-impact-pack", "aux_id": "ltdrdata/ComfyUI-Impact-Pack"})
    assert [(p["title"], p["registry_id"], p["install"]) for p in named.packs] == [
        ("Impact Pack", "comfyui-impact-pack", "git clone https://github.com/ltdrdata/ComfyUI-Impact-Pack")
    ]
    only_repo = index.state("Unlisted", {"aux_id": "someone/Brand-New"}).packs
    assert [(p["repo"], p["registry_id"], p["install"]) for p in only_repo] == [
        ("https://github.com/someone/Brand-New", None, "git clone https://github.com/someone/Brand-New")
    ]
    only_id = index.state("FaceDetailer", {"cnr_id": "other-pack"}).packs
    assert [(p["title"], p["repo"]) for p in only_id] == [("Other", "https://github.com/someone/Other-Pack")]
    unknown = index.state("Unlisted", {"cnr_id": "comfyui-brand-new"}).packs
    assert [(p["repo"], p["registry_id"], p["install"]) for p in unknown] == [
        (None, "comfyui-brand-new", "comfy node install comfyui-brand-new")
    ]
    assert index.state("Unlisted", {"cnr_id": "old"}).state == "disabled"  # the named pack is there, disabled
    core = index.state("BrandNewCoreNode", {"cnr_id": "comfy-core", "ver": "0.9.0"})
    assert core.state == "missing" and core.packs[0]["name"] == "ComfyUI" and core.packs[0]["installed"]
    # an unusable id names nothing: the map's claimants stay
    assert len(index.state("FaceDetailer", {"cnr_id": "$(reboot)"}).packs) == 2


def test_a_type_an_installed_pack_should_have_is_not_missing_a_pack() -> None:
    cache = {
        "packs": [
            {**_pack("kj", ["ImageResizeKJ"], remote="https://github.com/kijai/ComfyUI-KJNodes.git")},
            {**_pack("some-folder", []), "registry_id": "comfyui-some"},
        ]
    }
    index = NodeIndex.from_cache(cache, NodeMap(source=None), core=frozenset())
    for made in ({"aux_id": "kijai/ComfyUI-KJNodes"}, {"cnr_id": "ComfyUI-KJNodes"}):
        state = index.state("NewerKJNode", made)
        assert state.packs == [{"name": "kj", "installed": True, "note": NOT_FOUND_IN_PACK}], made
    assert index.state("Thing", {"cnr_id": "comfyui-some"}).packs[0]["name"] == "some-folder"


def _reference_find(
    files: dict[str, list[str]], name: str, folder: str | None, suffixes: tuple[str, ...], case_insensitive: bool
) -> tuple[bool, str | None, str]:
    """``find`` as it reads in prose: each try in every folder asked (in name order) for an exact match, then a
    case-folded one, then the file name in another subfolder; each folder's first file of a key wins."""
    from comfywatchman.workflow import names

    folders = [folder] if folder is not None else sorted(files)
    tries = [names.normalize(name + suffix) for suffix in suffixes]
    for norm in tries:
        for f in folders:
            hit = next((n for n in files.get(f, []) if names.normalize(n) == norm), None)
            if hit is not None:
                return True, hit, ""
    for norm in tries:
        for f in folders:
            hit = next((n for n in files.get(f, []) if names.normalize(n).casefold() == norm.casefold()), None)
            if hit is not None:
                return (
                    (True, hit, "")
                    if case_insensitive
                    else (False, hit, f"installed as {hit!r}: the letter case differs")
                )
    for norm in tries:
        base = names.basename(norm).casefold()
        for f in folders:
            hits = [n for n in files.get(f, []) if names.basename(n).casefold() == base]
            if len(hits) == 1:
                return False, hits[0], f"installed as {hits[0]!r} in another subfolder"
            if hits:
                return False, None, f"{len(hits)} files of that name in other subfolders"
    if folder is not None and folder not in files:
        return False, None, f"no {folder!r} folder in this install"
    return False, None, ""


def test_find_answers_as_asking_each_folder_in_turn_whatever_the_folder_and_suffixes() -> None:
    files = {
        "checkpoints": ["SDXL/a.safetensors", "b.safetensors", "x/dup.pt", "y/dup.pt", "Case.ckpt", "case.ckpt"],
        "embeddings": ["neg.pt", "sub/Neg.safetensors", "pos.bin", "Deep/pos.bin"],
        "loras": [" spaced.safetensors", "b.safetensors", "z/dup.pt", "CASE.ckpt", "é.safetensors"],
        "vae": ["sub\\b.safetensors", "q/neg.pt", "e\u0301.safetensors"],
    }
    cache = model_cache({f: ([f"/m/{f}"], names_) for f, names_ in files.items()})
    asked = [
        "b.safetensors", "B.SAFETENSORS", "SDXL\\a.safetensors", "a.safetensors", "dup.pt", "Dup.PT", "case.ckpt",
        "CASE.CKPT", "neg", "Neg", "pos", "deep/POS", "spaced.safetensors", " b.safetensors ", "é.safetensors",
        "e\u0301.safetensors", "sub/b.safetensors", "missing.safetensors", "q/neg",
    ]  # fmt: skip
    for case_insensitive in (False, True):
        index = ModelIndex.from_cache(cache, case_insensitive=case_insensitive)
        for name in asked:
            for folder in (None, "checkpoints", "embeddings", "loras", "vae", "unknown"):
                for suffixes in (("",), LOOKUP_SUFFIXES):
                    match = index.find(name, folder, suffixes)
                    expected = _reference_find(files, name, folder, suffixes, case_insensitive)
                    assert (match.installed, match.installed_as, match.note) == expected, (name, folder, suffixes)
                    assert match.looked_in == index.looked_in(folder)
