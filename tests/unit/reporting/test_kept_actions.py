"""The last report's actions kept between cycles (``state/report_actions.bin``): read back, they are the
actions of the report on disk as read from it (what ``kept_actions.slim`` keeps of each); changes appended
cycle after cycle and the list written whole again give the report made from scratch; a torn, foreign or
stale file costs a parse, never a wrong report."""

from __future__ import annotations

import logging
import marshal
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import kept_actions, kept_index
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.reporting.test_kept_index import (
    INCREMENTAL,
    KEPT_ACTIONS,
    from_scratch,
    incremental_cycle,
    install,
    outputs,
)
from tests.unit.stages.test_reuse import T0, context, report_files, run


def kept(home: Path) -> kept_actions.Kept:
    """Return what report_actions.bin keeps for the report now in ``home``."""
    index = orjson.loads((home / "state" / kept_index.FILE).read_bytes().split(b"\n", 1)[0])
    status = report_files(home)[0]
    return kept_actions.load(home / "state", index["key"], status, index["actions"])


def written(home: Path) -> list[dict[str, Any]]:
    """Return the report's actions as report_actions.bin keeps them (``kept_actions.slim``)."""
    actions: list[dict[str, Any]] = artifacts.read(report_files(home)[0], "master_status")["actions"]
    return [kept_actions.slim(action) for action in actions]


def records(home: Path) -> list[str]:
    """Return the kinds of the records of report_actions.bin, in order."""
    data, kinds, offset = (home / "state" / kept_actions.FILE).read_bytes(), [], 0
    while offset < len(data):
        end = data.index(b"\n", offset)
        head = orjson.loads(data[offset:end])
        kinds.append(head["kind"])
        offset = end + 1 + head["bytes"]
    return kinds


def b_needs(tree: ComfyTree, name: str) -> None:
    tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", [name])]))


def test_the_kept_actions_are_the_reports_actions_as_read_from_it(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(comfy_tree, home)
    assert len(written(home)) > 3 and kept(home).actions == written(home)  # kept by a report built in full
    assert records(home) == ["list"]
    b_needs(comfy_tree, "other.safetensors")
    incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert any(a["item"] == "other.safetensors" for a in written(home))
    assert kept(home).actions == written(home)  # and by one made from them: the change appended
    assert records(home) == ["list", "change"]
    # Kept for another report: the report on disk changed since.
    report_files(home)[0].write_bytes(report_files(home)[0].read_bytes() + b" ")
    assert kept(home).actions is None


def test_changes_cycle_after_cycle_give_the_report_made_from_scratch_and_the_list_is_written_whole_again(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(comfy_tree, home)
    # b.json needs a new file each cycle (an action made, the last one left out); d.json is removed on the way.
    for cycle in range(kept_actions.MOST_CHANGES):
        b_needs(comfy_tree, f"other{cycle}.safetensors")
        if cycle == 3:
            (comfy_tree.workflows / "d.json").unlink()
        incremental_cycle(comfy_tree, home, caplog, f"c{cycle + 2}", cycle + 2)
        assert kept(home).actions == written(home)
        assert records(home) == ["list", *["change"] * (cycle + 1)]
    # One change more than MOST_CHANGES: the list is written whole.
    b_needs(comfy_tree, "last.safetensors")
    history = (home / "state" / "report_history.json").read_bytes()
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c99", 99)
    assert kept(home).actions == written(home) and records(home) == ["list"]
    assert from_scratch(ctx, home, history) == made
    # And changes are appended to it again, made from the list as read.
    b_needs(comfy_tree, "after.safetensors")
    history = made[2]
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c100", 100)
    assert kept(home).actions == written(home) and records(home) == ["list", "change"]
    assert from_scratch(ctx, home, history) == made


def test_a_change_appended_to_the_list_gives_the_report_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(comfy_tree, home)
    b_needs(comfy_tree, "first.safetensors")
    incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    (comfy_tree.workflows / "d.json").unlink()  # the actions it alone needed are left out
    b_needs(comfy_tree, "second.safetensors")
    history = (home / "state" / "report_history.json").read_bytes()
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c3", 3)  # from the list and its first change
    assert records(home) == ["list", "change", "change"] and kept(home).actions == written(home)
    assert from_scratch(ctx, home, history) == made


@pytest.mark.parametrize("damage", ["torn", "torn_change", "foreign", "other_python", "not_a_list", "flipped"])
def test_broken_or_foreign_kept_actions_cost_a_parse_never_a_wrong_report(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    history = install(comfy_tree, home)
    path = home / "state" / kept_actions.FILE
    if damage == "torn_change":
        b_needs(comfy_tree, "first.safetensors")
        _, history_made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
        history = history_made[2]
        assert records(home) == ["list", "change"]
    head_line, blob = path.read_bytes().split(b"\n", 1)
    head = orjson.loads(head_line)
    if damage in ("torn", "torn_change"):
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "foreign":
        path.write_bytes(b"not a kept file\n" + blob)
    elif damage == "flipped":  # the same length, still valid marshal: only the digest tells
        assert b"safetensors" in blob
        path.write_bytes(head_line + b"\n" + blob.replace(b"safetensors", b"safetensorz", 1))
    elif damage == "other_python":
        path.write_bytes(orjson.dumps({**head, "tag": "cpython-27/marshal-2"}) + b"\n" + blob)
    else:
        other = marshal.dumps({"actions": 1})
        digest = kept_actions._digest(other)  # whole and checked: still not a list
        path.write_bytes(orjson.dumps({**head, "bytes": len(other), "digest": digest}) + b"\n" + other)
    b_needs(comfy_tree, "other.safetensors")
    ctx = context(comfy_tree, home, "c3", T0 + timedelta(hours=3))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="comfywatchman"):
        run(ctx)
    assert INCREMENTAL in caplog.text and KEPT_ACTIONS not in caplog.text  # the last report's lines parsed
    assert "report_actions.bin: not whole" in caplog.text  # and why, said
    made = outputs(home)
    assert b"other.safetensors" in made[0]
    whole = [kept_actions.slim(action) for action in orjson.loads(made[0])["actions"]]
    assert kept(home).actions == whole and records(home) == ["list"]  # whole again
    assert from_scratch(ctx, home, history) == made


def test_merge_puts_each_made_action_before_the_first_that_ranks_after_it() -> None:
    def action(aid: str, blocks: int, kind: str = "search") -> dict[str, Any]:
        return {"id": aid, "blocks": blocks, "kind": kind, "item": aid}

    stays = [action("a", 5), action("c", 3), action("b", 3, "search_z"), action("d", 1)]
    made = [action("z", 9), action("bb", 3), action("e", 1), action("y", 0)]
    ranked, places = kept_actions.merge(stays, made)
    assert [a["id"] for a in ranked] == ["z", "a", "bb", "c", "b", "d", "e", "y"]
    assert places == [0, 1, 4, 4]
    assert ranked == sorted(ranked, key=kept_actions.rank)


def test_slim_keeps_what_ranks_an_action_and_complete_adds_the_rest_from_its_line() -> None:
    action = {
        "id": "download:loras/a.safetensors",
        "kind": "download",
        "item": "a.safetensors",
        "folder": "loras",
        "url": "https://example.org/a.safetensors",
        "size": 10,
        "detail": "",
        "note": "on disk as b.safetensors",
        "commands": [{"argv": ["curl"], "shell": "curl", "note": "", "tool": "curl", "cwd": None}],
        "workflows": ["w.json"],
        "blocks": 1,
    }
    kept = kept_actions.slim(action)
    assert set(kept) == {*kept_actions.SLIM, "commands"} and "note" not in kept  # a download keeps its commands
    assert "commands" not in kept_actions.slim({**action, "kind": "review"})
    kept_actions.complete(kept, orjson.dumps(action))
    assert kept == action
    with pytest.raises(ValueError, match="not the line of action"):
        kept_actions.complete(kept, orjson.dumps({**action, "id": "download:loras/other.safetensors"}))
