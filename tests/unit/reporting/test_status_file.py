"""master_status.json on disk: one workflow or action per line, the small keys on the last line; read by
pieces, and another layout (an earlier version's, indented) read whole with the same answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import status_file

SUMMARY = {
    "workflows": 1,
    "ready": 0,
    "resolvable": 0,
    "needs_review": 0,
    "blocked": 0,
    "error": 1,
    "missing_models": 0,
    "missing_nodes": 0,
    "uncertain": 0,
    "download_bytes": 0,
    "download_sizes_known": 0,
}
HEAD: dict[str, Any] = {
    "generated_at": "2026-11-30T12:00:00+00:00",
    "cycle_id": "c1",
    "comfyui_root": "/c",
    "demo": False,
    "offline": True,
    "manager_maps": {"node_map": None, "model_list": None},
    "stale": None,
    "summary": SUMMARY,
    "action_totals": {},
    "actions": [],
    "search_now": {"next_cycle_at": None, "commands": []},
    "workflows": [],
    "recent_intake": [],
    "cycle": {"cycle_id": "c1", "stages": [], "errors": []},
}
WORKFLOW = {
    "workflow": "a\nb.json",
    "path": "/w/a\nb.json",
    "intake_source": "comfyui",
    "readiness": "error",
    "missing_models": [],
    "missing_nodes": [],
    "inactive_missing": 0,
    "uncertain_count": 0,
    "newly_missing": [],
    "last_resolved_at": None,
    "error": "/w/a.json: invalid JSON",
}
ACTION = {
    "id": "fix_workflow:/w/a\nb.json",
    "kind": "fix_workflow",
    "item": "a\nb.json",
    "folder": None,
    "url": None,
    "size": None,
    "detail": "/w/a.json: invalid JSON",
    "workflows": ["a\nb.json"],
    "blocks": 1,
}


def test_written_by_pieces_it_is_one_valid_document_read_back_by_pieces(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    workflow = status_file.part(WORKFLOW, "workflow", "test")
    status_file.write(path, HEAD, [workflow, workflow], [status_file.part(ACTION, "action", "test")])
    whole = artifacts.read(path, "master_status")  # one JSON document, valid against the schema
    assert whole == {**HEAD, "workflows": [WORKFLOW, WORKFLOW], "actions": [ACTION]}
    assert len(path.read_bytes().splitlines()) == 6  # a name with a newline stays on its line, escaped
    assert status_file.read_head(path) == HEAD
    assert list(status_file.items(path, "workflows")) == [WORKFLOW, WORKFLOW]
    assert list(status_file.items(path, "actions")) == [ACTION]
    status_file.write(path, HEAD, [], [])
    assert artifacts.read(path, "master_status") == HEAD


def test_a_report_in_another_layout_gives_the_same_answers(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    path.write_text(json.dumps({**HEAD, "workflows": [WORKFLOW], "actions": [ACTION]}, indent=2), encoding="utf-8")
    assert status_file.read_head(path) == HEAD
    assert list(status_file.items(path, "workflows")) == [WORKFLOW]
    assert status_file.read(path)["actions"] == [ACTION]


def test_parts_are_each_checked_and_the_one_refused_is_named_only_then() -> None:
    named: list[str] = []

    def source(item: Any) -> str:
        named.append(item["id"])
        return f"action {item['id']}"

    items = [{**ACTION, "id": f"fix_workflow:{n}"} for n in range(3)]
    assert list(status_file.parts(items, "action", source)) == [status_file.part(a, "action", "x") for a in items]
    assert named == []  # every one valid: no name made
    items[1] = {**items[1], "kind": "no such kind"}
    with pytest.raises(ArtifactError, match="action fix_workflow:1"):
        list(status_file.parts(items, "action", source))
    assert named == ["fix_workflow:1"]
    with pytest.raises(ArtifactError, match="workflow y"):
        status_file.part({**WORKFLOW, "readiness": "fine"}, "workflow", lambda: "workflow y")


def test_an_invalid_part_is_refused_where_it_is_made_and_the_old_report_stays(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    status_file.write(path, HEAD, [], [])
    before = path.read_bytes()
    with pytest.raises(ArtifactError, match="workflow x"):
        status_file.part({**WORKFLOW, "readiness": "fine"}, "workflow", "workflow x")
    with pytest.raises(ArtifactError), status_file.Writer(path) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        writer.finish({**HEAD, "summary": {}})  # the head is checked before the rename
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["master_status.json"]  # no temp file left


def test_a_torn_report_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    status_file.write(path, HEAD, [status_file.part(WORKFLOW, "workflow", "test")], [])
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ArtifactError, match=r"master_status\.json"):
        status_file.read_head(path)
    with pytest.raises(ArtifactError, match=r"missing\.json: missing"):
        status_file.read_head(tmp_path / "missing.json")


def test_a_last_line_longer_than_one_look_back_is_still_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "master_status.json"
    status_file.write(path, HEAD, [status_file.part(WORKFLOW, "workflow", "test")], [])
    monkeypatch.setattr(status_file, "_TAIL_WINDOW", 16)
    assert status_file.read_head(path) == HEAD


def test_a_report_flushed_in_the_background_is_put_in_place_when_settled(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    status_file.write(path, HEAD, [], [])
    before = path.read_bytes()
    with status_file.Writer(path) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        writer.actions([status_file.part(ACTION, "action", "test")])
        writer.finish(HEAD, settle=False)
    assert path.read_bytes() == before  # flushed meanwhile, not in place yet
    writer.settle()
    assert status_file.read(path)["workflows"] == [WORKFLOW]
    assert [p.name for p in tmp_path.iterdir()] == ["master_status.json"]
    writer.settle()  # nothing waits any more
    writer.abandon()
    assert status_file.read(path)["workflows"] == [WORKFLOW]


def test_a_report_abandoned_before_it_is_settled_leaves_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    status_file.write(path, HEAD, [], [])
    before = path.read_bytes()
    with status_file.Writer(path) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        writer.finish(HEAD, settle=False)
    writer.abandon()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["master_status.json"]
    # An error in the block after the file is written drops it too.
    with pytest.raises(RuntimeError), status_file.Writer(path) as writer:
        writer.finish(HEAD, settle=False)
        raise RuntimeError("the caller failed")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["master_status.json"]


def test_a_report_with_workflows_and_no_action_reads_back_whole(tmp_path: Path) -> None:
    # Every workflow ready: the actions list opens and closes on one line, which the reader must take as empty.
    path = tmp_path / "master_status.json"
    workflow = status_file.part(WORKFLOW, "workflow", "test")
    status_file.write(path, HEAD, [workflow], [])
    assert list(status_file.items(path, "actions")) == []
    assert status_file.read(path) == {**HEAD, "workflows": [WORKFLOW], "actions": []}
    assert artifacts.read(path, "master_status") == status_file.read(path)


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_workflow_lines_copied_from_a_report_by_their_spans_are_those_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    texts = [status_file.part({**WORKFLOW, "workflow": f"w{n}.json"}, "workflow", "test") for n in range(6)]
    first = tmp_path / "first.json"
    with status_file.Writer(first) as writer:
        writer.workflow(texts[0])
        writer.workflow_lines(texts[1:])
        writer.finish(HEAD)
        spans = writer.workflow_spans
    data = first.read_bytes()
    assert [data[at : at + size] for at, size in spans] == texts  # where each line went
    if not kernel_copy:  # a file system or a system without os.copy_file_range: read and written
        monkeypatch.delattr(status_file.os, "copy_file_range", raising=False)
    second = tmp_path / "second.json"
    new = status_file.part({**WORKFLOW, "workflow": "new.json"}, "workflow", "test")
    with first.open("rb") as source, status_file.Writer(second) as writer:
        writer.copy_workflows(source, spans[0][0], spans[0:2])
        writer.workflow(new)
        writer.copy_workflows(source, spans[3][0], spans[3:6])
        writer.actions([])
        writer.finish(HEAD)
        copied = writer.workflow_spans
    assert [w["workflow"] for w in status_file.items(second, "workflows")] == [
        "w0.json",
        "w1.json",
        "new.json",
        "w3.json",
        "w4.json",
        "w5.json",
    ]
    again = second.read_bytes()
    assert [again[at : at + size] for at, size in copied] == [*texts[0:2], new, *texts[3:6]]
    third = status_file.Writer(tmp_path / "third.json")
    with first.open("rb") as source, third, pytest.raises(ValueError, match="do not start where told"):
        third.copy_workflows(source, spans[1][0], spans[0:2])


def test_action_lines_copied_by_their_lengths_are_those_lines(tmp_path: Path) -> None:
    lines = [status_file.part({**ACTION, "id": f"fix_workflow:{n}"}, "action", "test") for n in range(5)]
    first = tmp_path / "first.json"
    with status_file.Writer(first) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        writer.actions(lines)
        writer.finish(HEAD)
        start, lengths = writer.actions_at, writer.action_lengths
    assert lengths == [len(line) for line in lines]
    new = status_file.part({**ACTION, "id": "fix_workflow:new"}, "action", "test")
    second = tmp_path / "second.json"
    with first.open("rb") as source, status_file.Writer(second) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        at = start + lengths[0] + 2 + lengths[1] + 2  # the third line's offset
        copies = [status_file.Copy(source, start, lengths[:2]), [new], status_file.Copy(source, at, lengths[2:])]
        writer.action_blocks(copies)
        writer.finish(HEAD)
        assert writer.action_lengths == [*lengths[:2], len(new), *lengths[2:]]
    assert [a["id"] for a in status_file.items(second, "actions")] == [
        "fix_workflow:0",
        "fix_workflow:1",
        "fix_workflow:new",
        "fix_workflow:2",
        "fix_workflow:3",
        "fix_workflow:4",
    ]
    # A block of joined lines: their lengths are not told apart.
    with status_file.Writer(tmp_path / "third.json") as writer:
        writer.action_blocks([(b",\n".join(lines), len(lines))])
        writer.finish(HEAD)
        assert writer.action_lengths is None
