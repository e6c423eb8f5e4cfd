"""The Markdown report's line about ComfyUI-Manager's maps."""

from __future__ import annotations

from typing import Any

from comfywatchman.reporting import commands, markdown


def test_manager_line_names_each_map_its_source_and_version() -> None:
    line = markdown.manager_line(
        {
            "node_map": {
                "path": "/c/custom_nodes/ComfyUI-Manager/extension-node-map.json",
                "source": "custom_nodes",
                "version": "3.41",
            },
            "model_list": {"path": "/v/comfyui_manager/model-list.json", "source": "tool_env", "version": None},
        }
    )
    assert line == (
        "ComfyUI-Manager: node map `/c/custom_nodes/ComfyUI-Manager/extension-node-map.json` (custom_nodes 3.41); "
        "model list `/v/comfyui_manager/model-list.json` (tool_env)"
    )


def test_manager_line_when_no_map_was_found() -> None:
    line = markdown.manager_line({"node_map": None, "model_list": None})
    assert line == "ComfyUI-Manager: node map: none found; model list: none found"


def _download(index: int, repo: str = "o/r") -> dict[str, Any]:
    argv = ["hf", "download", repo, f"f{index}.safetensors", "--local-dir", "/c/models/loras"]
    return {
        "kind": "download",
        "item": f"f{index}.safetensors",
        "folder": "loras",
        "url": f"https://huggingface.co/{repo}/resolve/main/f{index}.safetensors",
        "size": 1000,
        "detail": "",
        "target_path": f"/c/models/loras/f{index}.safetensors",
        "commands": [commands.step("hf", argv)],
        "workflows": [f"w{index}.json"],
        "blocks": 1,
    }


def test_download_tail_shares_one_hf_command_per_repo_and_folder() -> None:
    ranked = [_download(i) for i in range(markdown.FULL_ITEMS_PER_KIND + 5)] + [_download(99, "o/other")]
    items = markdown.rank_items(ranked)
    # The first 25 one by one, then one group per repository and folder: 5 files of o/r, 1 of o/other.
    assert len(items) == markdown.FULL_ITEMS_PER_KIND + 2
    group, other = items[-2:]
    assert isinstance(group, markdown.Group) and len(group.actions) == 5
    assert isinstance(other, markdown.Group) and len(other.actions) == 1
    lines = markdown.download_lines(group.actions)
    assert lines == [
        "hf download o/r " + " ".join(f"f{i}.safetensors" for i in range(25, 30)) + " --local-dir /c/models/loras"
    ]


def test_pack_actions_are_never_grouped() -> None:
    packs = [
        {"kind": "install_pack", "item": f"p{i}", "commands": [], "workflows": ["w"], "blocks": 1}
        for i in range(markdown.FULL_ITEMS_PER_KIND + 3)
    ]
    assert not any(isinstance(item, markdown.Group) for item in markdown.rank_items(packs))


def test_alone_names_the_actions_the_page_shows_alone() -> None:
    # Searches wait in their group wherever they rank; the first few of a kind alone, the rest grouped; packs alone.
    searches = [{"kind": "search", "item": f"s{i}", "detail": "", "workflows": ["w"], "blocks": 1} for i in range(3)]
    packs = [{"kind": "install_pack", "item": f"p{i}", "workflows": ["w"], "blocks": 1} for i in range(30)]
    downloads = [_download(i) for i in range(markdown.FULL_ITEMS_PER_KIND + 5)]
    ranked = [searches[0], *downloads[:10], searches[1], *packs, *downloads[10:], searches[2]]
    shown = [item for item in markdown.rank_items(ranked) if not isinstance(item, markdown.Group)]
    places = markdown.alone(ranked)
    assert [ranked[place] for place in places] == shown
    assert len(places) == markdown.FULL_ITEMS_PER_KIND + len(packs)


def test_workflows_missing_something_new_are_named() -> None:
    workflows = [
        {"workflow": "a.json", "readiness": "blocked", "error": None, "missing_models": [], "missing_nodes": []},
        {"workflow": "b.json", "readiness": "ready", "error": None, "missing_models": [], "missing_nodes": []},
    ]
    workflows[0]["newly_missing"] = ["model:loras:x"]
    workflows[1]["newly_missing"] = []
    lines = markdown.workflows_section(markdown.rows_of(workflows))
    assert "Missing something new since the last cycle (1): `a.json`." in lines


def test_unreadable_workflows_are_listed_with_what_is_wrong() -> None:
    def broken(name: str) -> dict[str, object]:
        error = f"/w/{name}: invalid JSON (Expecting value at line 1 column 12)"
        return {"workflow": name, "readiness": "error", "error": error, "missing_models": [], "missing_nodes": []}

    workflows = [broken(f"b{i:02}.json") for i in range(markdown.NAMES_PER_GROUP + 2)]
    workflows.append({**broken("a.json"), "workflow": "ok.json", "readiness": "ready", "error": None})
    for wf in workflows:
        wf["newly_missing"] = []
    lines = markdown.workflows_section(markdown.rows_of(workflows))
    start = lines.index(f"### Waiting for a fix of the file ({markdown.NAMES_PER_GROUP + 2})")
    assert lines[start + 2] == "- `b00.json`: /w/b00.json: invalid JSON (Expecting value at line 1 column 12)"
    assert lines[start + 2 + markdown.NAMES_PER_GROUP] == "- and 2 more (all in master_status.json)"
    assert lines[start + 3 + markdown.NAMES_PER_GROUP] == ""
    assert "`ok.json`" in lines


def test_failed_searches_say_why_and_when_they_are_asked_again() -> None:
    failed = [
        {"kind": "retry", "item": f"m{i}.safetensors", "detail": "civitai: HTTP 503", "workflows": ["w"], "blocks": 1}
        for i in range(2)
    ]
    (group,) = markdown.rank_items(failed)
    search_now = {
        "next_cycle_at": "2026-12-01T10:00:00+00:00",
        "commands": [commands.step("comfywatchman", ["comfywatchman", "--run-cycle"])],
    }
    lines = markdown.group_item(group, 3, search_now, offline=False)
    assert lines[0] == "**Search again**: 2 files whose search failed, needed by 1 workflow"
    assert (
        "   Why: civitai: HTTP 503. A failed search is never cached: the next cycle asks again, "
        "due about 2026-12-01T10:00:00+00:00." in lines
    )
    assert "   To search now: `comfywatchman --run-cycle`" in lines


def test_a_fix_says_whether_it_is_the_workflow_itself_or_a_name_workflows_share() -> None:
    unreadable = {"kind": "fix_workflow", "item": "b.json", "folder": None, "detail": "/w/b.json: empty file"}
    unreadable |= {"workflows": ["b.json"], "blocks": 1}
    assert markdown.action_item(unreadable, 3)[0] == "**Fix** `b.json` — the workflow itself cannot be read"
    bad_name = {"kind": "fix_workflow", "item": "../x.safetensors", "folder": "loras", "detail": "a path outside"}
    bad_name |= {"workflows": ["a.json"], "blocks": 1}
    assert markdown.action_item(bad_name, 3)[0] == "**Fix** `../x.safetensors` (loras) — needed by 1 workflow"


def test_the_verification_line_says_when_no_file_declares_a_hash() -> None:
    def checked(declared: int, verified: int, size: int) -> dict[str, Any]:
        progress = {"files_declared": declared, "files_verified": verified, "files_pending": declared - verified}
        progress |= {"bytes_verified": size, "bytes_pending": 0}
        return {"progress": progress, "drift": 0, "alternatives": 2}

    assert markdown.verification_summary(checked(0, 0, 0)) == (
        "Declared hashes: no installed file has one; 2 missing files have a variant on disk."
    )
    assert markdown.verification_summary(checked(1, 1, 0)).startswith("Declared hashes: 1 of 1 files verified (0 B);")
    assert "(1.5 KB)" in markdown.verification_summary(checked(2, 2, 1500))
