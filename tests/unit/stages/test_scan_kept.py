"""The record of scan.json's lines (state/scan_lines.json) on real files: what it gives is what reading every
line gives, and a record that is not the one of scan.json's bytes is never used."""

from __future__ import annotations

import json
from pathlib import Path

from comfywatchman import artifacts
from comfywatchman.stages import scan, scan_kept
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_scan import cycle, make_ctx


def _install(comfy_tree: ComfyTree) -> None:
    comfy_tree.model("checkpoints", "a.safetensors")
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["b.safetensors"])]))
    comfy_tree.workflow("b copy.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["b.safetensors"])]))
    comfy_tree.workflow(
        "c.json", ui_workflow([ui_node(1, "NoSuchNode", ["l.safetensors"]), ui_node(2, "VAELoader", ["v.safetensors"])])
    )
    comfy_tree.workflow("broken.json", "{not json")


def test_the_record_gives_what_reading_every_line_gives(comfy_tree: ComfyTree, home: Path) -> None:
    _install(comfy_tree)
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    state = ctx.state_dir
    inputs = json.loads((state / "scan_inputs.json").read_text(encoding="utf-8"))
    record = artifacts.read(state / scan_kept.LINES_FILE, scan_kept.LINES_SCHEMA)
    assert record["scan_sha256"] == inputs["scan_sha256"]
    assert len(record["entries"]) == 4  # the unreadable workflow's entry is never kept, so not recorded

    recorded = scan_kept._from_record(state / "scan.json", state / scan_kept.LINES_FILE, inputs["scan_sha256"])
    lines, head, digest = scan_kept._index(state / "scan.json", lambda e: scan.counted(e, False))
    assert recorded == (lines, head) and digest == inputs["scan_sha256"]
    assert any(kept.missing_models and kept.missing_nodes for kept in lines.values())  # counts are compared too
    text = (state / "scan.json").read_bytes()
    for kept in lines.values():  # each place is the entry's text
        assert json.loads(text[kept.offset : kept.offset + kept.length])["sha256"] in lines


def test_a_scan_that_keeps_entries_by_the_record_writes_what_reading_the_lines_writes(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    _install(comfy_tree)
    by_record = make_ctx(comfy_tree, home)
    other_home = tmp_path / "other-home"
    other_home.mkdir()
    by_lines = make_ctx(comfy_tree, other_home)
    for ctx in (by_record, by_lines):
        cycle(ctx)
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["v.safetensors"])]))
    (by_lines.state_dir / scan_kept.LINES_FILE).unlink()  # no record: every line is read, as before there was one
    outcomes = [cycle(ctx) for ctx in (by_record, by_lines)]
    assert outcomes[0].counts == outcomes[1].counts and outcomes[0].counts["reused"] == 3
    written = [(ctx.state_dir / "scan.json").read_bytes().split(b"\n") for ctx in (by_record, by_lines)]
    assert written[0][1:-2] == written[1][1:-2]  # every entry, byte for byte (the heads name their cycles' times)
    # and the record written again describes the new file
    inputs = json.loads((by_record.state_dir / "scan_inputs.json").read_text(encoding="utf-8"))
    record = artifacts.read(by_record.state_dir / scan_kept.LINES_FILE, scan_kept.LINES_SCHEMA)
    assert record["scan_sha256"] == inputs["scan_sha256"]


def test_a_record_of_other_bytes_or_a_broken_one_is_not_used(comfy_tree: ComfyTree, home: Path) -> None:
    _install(comfy_tree)
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    state = ctx.state_dir
    scan_json, record_path = state / "scan.json", state / scan_kept.LINES_FILE
    sha = json.loads((state / "scan_inputs.json").read_text(encoding="utf-8"))["scan_sha256"]
    assert scan_kept._from_record(scan_json, record_path, "0" * 64) is None  # scan_inputs names other bytes

    original = scan_json.read_bytes()
    scan_json.write_bytes(original.replace(b'"reused":false', b'"reused":true ', 1))  # same length, other bytes
    assert scan_kept._from_record(scan_json, record_path, sha) is None
    scan_json.write_bytes(original)

    record = json.loads(record_path.read_text(encoding="utf-8"))
    record["entries"][0][1] = "long"
    record_path.write_text(json.dumps(record), encoding="utf-8")
    assert scan_kept._from_record(scan_json, record_path, sha) is None  # not valid against its schema

    record_path.write_text("{torn", encoding="utf-8")
    kept = scan_kept.KeptEntries.read(scan_json, {"install": "i", "scan_sha256": sha}, "i", lambda e: ([], []))
    assert kept.lines == scan_kept._index(scan_json, lambda e: ([], []))[0] and len(kept.lines) == 3  # lines read


def test_a_kept_line_is_marked_reused_at_its_own_key_only(tmp_path: Path) -> None:
    base = ("w.json", "/w/w.json", "comfyui", "a" * 64)
    entry = {
        "container": "json",
        "nodes": [{"class_type": "X", "packs": [{"name": "p", "reused": False, "note": '"reused":false'}]}],
        "path": base[1],
        "reused": False,
        "sha256": base[3],
        "source": base[2],
        "workflow": base[0],
    }
    line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    path = tmp_path / "scan.json"
    path.write_bytes(b"{\n" + line + b"\n")
    kept = scan_kept.KeptEntries(path, {}, {})
    try:
        at = scan_kept.KeptLine(2, len(line), base, False, [], [])
        marked = kept.text(at, base)
        assert json.loads(marked) == {**entry, "reused": True}  # the nested key and the string stay as they were
        assert marked == line.replace(b'"reused":false,"sha256"', b'"reused":true,"sha256"')
        assert kept.text(at._replace(reused=True), base) == line  # already marked: the line as it is
        moved = ("w.json", "/elsewhere/w.json", "comfyui", "a" * 64)  # the intake fields differ: written anew
        assert json.loads(kept.text(at, moved)) == {**entry, "path": moved[1], "reused": True}
    finally:
        kept.close()
