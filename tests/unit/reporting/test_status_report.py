"""Readiness per workflow, ranked actions, and what the report keeps across cycles."""

from __future__ import annotations

from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import answers, commands, markdown, status_report


def _model(name: str, status: str = "missing", active: bool = True, folder: str = "loras") -> dict[str, Any]:
    return {
        "name": name,
        "folder": folder,
        "origins": [
            {
                "node_id": "3",
                "node_type": "LoraLoader",
                "input": "lora_name",
                "subgraph_path": [],
                "mode": "active" if active else "bypassed",
                "via": "widget",
            }
        ],
        "declarations": [],
        "active": active,
        "invalid_reason": "escapes its folder with '..'" if status == "invalid" else None,
        "status": status,
        "installed_as": None,
        "note": "",
        "looked_in": ["/c/models/loras"],
    }


def _node(
    class_type: str, state: str, packs: list[dict[str, Any]] | None = None, active: bool = True
) -> dict[str, Any]:
    return {
        "class_type": class_type,
        "node_ids": ["9"],
        "modes": ["active"],
        "active": active,
        "state": state,
        "packs": packs or [],
    }


def _workflow(
    models: list[dict[str, Any]] = (),
    nodes: list[dict[str, Any]] = (),
    error: str | None = None,
    path: str = "/w/a.json",
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "workflow": path.rsplit("/", 1)[-1],
        "path": path,
        "source": "comfyui",
        "sha256": "0" * 64,
        "format": "ui",
        "error": error,
        "reused": False,
        "models": list(models),
        "nodes": list(nodes),
    }


def _result(
    name: str, status: str, folder: str = "loras", url: str | None = None, size: int | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "type": folder,
        "status": status,
        "source": "civitai",
        "evidence": "exact_filename" if status == "FOUND" else "none",
        "url": url,
        "sha256": None,
        "size": size,
        "reason": "",
        "candidates": [],
        "details": {},
        "attempts": [],
        "workflows": [],
    }


def _build(
    scan: dict[str, Any], search: dict[str, Any] | None, history: dict[str, Any], count_inactive: bool, now: str
) -> tuple[list[dict[str, Any]], dict[str, Any], status_report.Aggregate]:
    """Return the entries, the summary and the Aggregate of ``scan``'s workflows with ``search``'s answers."""
    found = answers.from_results((search or {}).get("results", []))
    entries, aggregate = status_report.build(scan["workflows"], found, history, count_inactive, now)
    return entries, aggregate.summary(), aggregate


PACK = {
    "name": "UltimateSDUpscale",
    "installed": False,
    "repo": "https://github.com/ssitu/x",
    "install": "git clone https://github.com/ssitu/x",
}


@pytest.mark.parametrize(
    ("models", "nodes", "results", "readiness"),
    [
        ([_model("a", "installed")], [_node("KSampler", "core")], [], "ready"),
        ([_model("a")], [], [_result("a", "FOUND", url="https://civitai.com/x")], "resolvable"),
        ([_model("a")], [], [_result("a", "UNCERTAIN")], "needs_review"),
        ([_model("a")], [], [_result("a", "NOT_SEARCHED")], "needs_review"),
        ([_model("a")], [], [_result("a", "ERROR")], "needs_review"),
        ([_model("a")], [], [_result("a", "NOT_FOUND")], "blocked"),
        (
            [_model("a")],
            [],
            [_result("a", "NEEDS_ACCESS", url="https://huggingface.co/o/r/resolve/main/a")],
            "needs_review",
        ),
        ([_model("../x", "invalid")], [], [], "blocked"),
        (
            [_model("a", active=False)],
            [],
            [_result("a", "NOT_FOUND")],
            "ready",
        ),  # bypassed: listed, not counted
        (
            [],
            [_node("Old", "disabled", [{"name": "OldPack", "installed": False, "disabled": True}])],
            [],
            "resolvable",
        ),
        ([], [_node("U", "missing", [PACK])], [], "resolvable"),
        ([], [_node("U", "missing", [PACK, {**PACK, "name": "Fork"}])], [], "needs_review"),
        ([], [_node("U", "missing", [])], [], "blocked"),
        ([_model("a")], [_node("U", "missing", [])], [_result("a", "FOUND", url="u")], "blocked"),
    ],
)
def test_build_classifies_readiness(models, nodes, results, readiness) -> None:  # type: ignore[no-untyped-def]
    workflows, summary, _aggregate = _build(
        {"workflows": [_workflow(models, nodes)]}, {"results": results}, {}, False, "T1"
    )
    assert workflows[0]["readiness"] == readiness
    assert summary[readiness] == 1


def test_build_counts_inactive_when_configured() -> None:
    scan = {"workflows": [_workflow([_model("a", active=False)])]}
    workflows, _, _aggregate = _build(scan, {"results": [_result("a", "NOT_FOUND")]}, {}, True, "T1")
    assert workflows[0]["readiness"] == "blocked"


def test_build_keeps_last_resolved_at_across_cycles_and_reports_newly_missing() -> None:
    scan_ok = {"workflows": [_workflow([_model("a", "installed")])]}
    workflows, _, _ = _build(scan_ok, {"results": []}, {}, False, "T1")
    assert workflows[0]["last_resolved_at"] == "T1" and workflows[0]["newly_missing"] == []
    history = {"/w/a.json": {"last_resolved_at": "T1", "missing": []}}
    scan_broken = {"workflows": [_workflow([_model("b")])]}
    workflows, _, _aggregate = _build(scan_broken, {"results": [_result("b", "NOT_FOUND")]}, history, False, "T2")
    assert workflows[0]["last_resolved_at"] == "T1"  # not resolvable now: the old time stays
    assert workflows[0]["newly_missing"] == ["model:loras:b"]


def test_build_marks_unreadable_workflow_as_error() -> None:
    workflows, summary, _aggregate = _build(
        {"workflows": [_workflow(error="/w/a.json: invalid JSON")]}, None, {}, False, "T"
    )
    assert workflows[0]["readiness"] == "error" and summary["error"] == 1


def test_actions_rank_by_workflows_unblocked() -> None:
    scan = {
        "workflows": [
            _workflow([_model("shared")], path="/w/1.json"),
            _workflow([_model("shared"), _model("solo")], path="/w/2.json"),
            _workflow(nodes=[_node("U", "missing", [PACK])], path="/w/3.json"),
        ]
    }
    results = {
        "results": [
            _result("shared", "FOUND", url="https://civitai.com/s", size=2_000_000_000),
            _result("solo", "UNCERTAIN"),
        ]
    }
    workflows, summary, aggregate = _build(scan, results, {}, False, "T")
    actions = aggregate.actions()
    assert (actions[0]["kind"], actions[0]["item"], actions[0]["blocks"]) == ("download", "shared", 2)
    assert {a["kind"] for a in actions[1:]} == {"review", "install_pack"}
    assert summary["download_bytes"] == 2_000_000_000
    page = markdown.render(
        {
            "generated_at": "T",
            "cycle_id": "c",
            "comfyui_root": "/c",
            "demo": False,
            "offline": False,
            "summary": summary,
            "action_totals": status_report.action_totals(actions),
            "actions": actions,
            "workflows": workflows,
            "recent_intake": [],
            "cycle": {"stages": [], "errors": []},
        }
    )
    assert "1. **Download** `shared` (loras) — needed by 2 workflows, 2.0 GB" in page
    assert "cd ./custom_nodes && git clone https://github.com/ssitu/x" in page


def test_actions_one_per_pack_for_every_node_type_it_provides() -> None:
    scan = {
        "workflows": [
            _workflow(nodes=[_node("U", "missing", [PACK]), _node("V", "missing", [PACK])], path="/w/1.json"),
            _workflow(nodes=[_node("V", "missing", [PACK])], path="/w/2.json"),
        ]
    }
    _workflows, _, aggregate = _build(scan, {"results": []}, {}, False, "T")
    (action,) = aggregate.actions()
    assert (action["kind"], action["item"], action["node_types"], action["blocks"]) == (
        "install_pack",
        "UltimateSDUpscale",
        ["U", "V"],
        2,
    )
    assert status_report.action_totals([action]) == {
        "install_pack": {"actions": 1, "workflows": 2, "bytes": 0, "sizes_known": 0}
    }


def test_action_totals_count_each_kind_its_workflows_once_and_its_known_sizes() -> None:
    def made(kind: str, size: int | None, *workflows: str) -> dict[str, object]:
        return {"kind": kind, "size": size, "workflows": list(workflows)}

    ranked = [
        made("download", 100, "a", "b"),
        made("search", None, "a"),
        made("download", None, "b", "c"),
        made("download", 0, "d"),  # a size of 0 is not a known size (as for None)
        made("search", None, "a", "e"),
        made("download", 20, "a"),
    ]
    assert status_report.action_totals(ranked) == {
        "download": {"actions": 4, "workflows": 4, "bytes": 120, "sizes_known": 2},
        "search": {"actions": 2, "workflows": 2, "bytes": 0, "sizes_known": 0},
    }
    assert list(status_report.action_totals(ranked)) == ["download", "search"]  # the order first met
    assert status_report.action_totals([]) == {}


def test_actions_use_the_nodes_registry_id_for_comfy_node_install() -> None:
    node = {**_node("U", "missing", [PACK]), "cnr_id": "comfyui_ultimatesdupscale"}
    _workflows, _, aggregate = _build({"workflows": [_workflow(nodes=[node])]}, {"results": []}, {}, False, "T")
    facts = commands.InstallFacts(root="/c")
    (action,) = aggregate.actions(facts)
    assert action["registry_id"] == "comfyui_ultimatesdupscale"
    assert action["commands"][0]["shell"] == "comfy --workspace /c node install comfyui_ultimatesdupscale"


def test_download_action_has_exact_target_size_and_token_of_a_gated_file() -> None:
    url = "https://huggingface.co/o/gated/resolve/main/m.safetensors"
    result = {**_result("m.safetensors", "FOUND", url=url, size=5_000), "details": {"huggingface": {"gated": True}}}
    scan = {"workflows": [_workflow([_model("m.safetensors")])]}
    _workflows, _, aggregate = _build(scan, {"results": [result]}, {}, False, "T")
    facts = commands.InstallFacts(root="/c", targets={("loras", "m.safetensors"): "/c/models/loras/m.safetensors"})
    (action,) = aggregate.actions(facts)
    assert action["target_path"] == "/c/models/loras/m.safetensors" and action["size"] == 5_000
    assert action["token"]["env"] == "HF_TOKEN" and action["token"]["required"] is True
    assert action["commands"][0]["argv"][-2:] == ["--local-dir", "/c/models/loras"]


def test_search_actions_carry_no_command_of_their_own() -> None:
    scan = {"workflows": [_workflow([_model("a")])]}
    _workflows, _, aggregate = _build(scan, {"results": [_result("a", "ERROR")]}, {}, False, "T")
    facts = commands.InstallFacts(root="/c", next_cycle_at="2026-12-01T10:00:00+00:00")
    (action,) = aggregate.actions(facts)
    assert action["kind"] == "retry"
    assert "commands" not in action  # the one command that searches now is the report's search_now


def test_a_type_an_installed_pack_should_have_asks_to_check_that_pack_never_to_install_it() -> None:
    note = "pack installed, node type not found: the pack may have failed to import or be outdated"
    scan = {
        "workflows": [_workflow(nodes=[_node("NewKJ", "missing", [{"name": "kj", "installed": True, "note": note}])])]
    }
    workflows, summary, aggregate = _build(scan, {"results": []}, {}, False, "T")
    assert workflows[0]["readiness"] == "needs_review"
    [action] = aggregate.actions()
    assert (action["kind"], action["detail"]) == ("check_pack", f"kj: {note}")
    page = markdown.render(
        {
            "generated_at": "T",
            "cycle_id": "c",
            "comfyui_root": "/c",
            "demo": False,
            "offline": False,
            "summary": summary,
            "action_totals": status_report.action_totals([action]),
            "actions": [action],
            "workflows": workflows,
            "recent_intake": [],
            "cycle": {"stages": [], "errors": []},
        }
    )
    assert "**Check the installed pack for node** `NewKJ`" in page and "git clone" not in page
    assert f"kj: {note}" in page


def test_actions_ask_for_access_with_page_and_token_name_when_file_needs_access() -> None:
    locked = _result("flux1-dev.safetensors", "NEEDS_ACCESS", "diffusion_models", url="https://hf/x/resolve/main/f")
    locked["details"] = {
        "access": {"page": "https://huggingface.co/black-forest-labs/FLUX.1-dev", "token": "HF_TOKEN", "why": "gated"}
    }
    scan = {"workflows": [_workflow([_model("flux1-dev.safetensors", folder="diffusion_models")])]}
    _workflows, _summary, aggregate = _build(scan, {"results": [locked]}, {}, False, "T")
    [action] = aggregate.actions()
    assert action["kind"] == "get_access"
    assert action["url"] == "https://huggingface.co/black-forest-labs/FLUX.1-dev"
    page = "https://huggingface.co/black-forest-labs/FLUX.1-dev"
    assert action["detail"] == f"gated: get access at {page}, then set HF_TOKEN to that account's token"


def test_workflow_entries_name_what_they_miss_and_refer_to_the_action_by_id() -> None:
    scan = {
        "workflows": [
            _workflow([_model("shared"), _model("solo", folder="vae")], path="/w/1.json"),
            _workflow([_model("shared")], nodes=[_node("U", "missing", [PACK])], path="/w/2.json"),
        ]
    }
    results = {"results": [_result("shared", "FOUND", url="https://civitai.com/s", size=7)]}
    workflows, _, aggregate = _build(scan, results, {}, False, "T")
    actions = {a["id"]: a for a in aggregate.actions(commands.InstallFacts(root="/c"))}
    assert len(actions) == 3
    for entry in workflows:
        artifacts.validate(entry, "master_status", "entry", "workflow")
        for missing in entry["missing_models"]:
            # The entry says what the workflow names; the file's facts are said once, in the action.
            assert set(missing) == {"name", "folder", "status", "node", "action"}
            action = actions[missing["action"]]
            assert (action["item"], action["folder"]) == (missing["name"], missing["folder"])
            assert entry["workflow"] in action["workflows"]
        for node in entry["missing_nodes"]:
            assert set(node) == {"class_type", "state", "node_ids", "action"}
            assert actions[node["action"]]["kind"] == "install_pack"
    shared = actions["download:loras/shared"]
    assert (shared["source"], shared["evidence"], shared["size"], shared["blocks"]) == (
        "civitai",
        "exact_filename",
        7,
        2,
    )
    assert actions["search:vae/solo"]["workflows"] == ["1.json"]
    # Where files were looked for depends on their folder type alone: once per type, not per file.
    assert aggregate.model_dirs == {"loras": ["/c/models/loras"], "vae": ["/c/models/loras"]}
    assert all("looked_in" not in a for a in actions.values())
    for action in actions.values():
        artifacts.validate(action, "master_status", "action", "action")


def test_a_review_keeps_every_candidate_the_search_offered() -> None:
    offered = [
        {
            "source": "civitai",
            "name": f"c{i}.safetensors",
            "url": f"https://c/{i}",
            "evidence": "similar_name",
            "reason": "similar name",
            "sha256": None,
            "size": i,
            "details": {},
        }
        for i in range(7)
    ]
    result = {**_result("a", "UNCERTAIN"), "candidates": offered}
    _, _, aggregate = _build({"workflows": [_workflow([_model("a")])]}, {"results": [result]}, {}, False, "T")
    (action,) = aggregate.actions()
    assert [c["name"] for c in action["candidates"]] == [f"c{i}.safetensors" for i in range(7)]
    assert set(action["candidates"][0]) == {"name", "source", "url", "reason", "size"}
