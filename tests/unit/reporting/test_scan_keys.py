"""The report's digests of scan.json's lines taken through the scan's record (``scan_keys``): the same as hashing
every line (kept == fresh) as workflows are kept, edited, added and removed, with a torn or foreign keys file,
and without a record; the whole report is the same with the keys and without them. Real stages on a small
install in tmp_path."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from comfywatchman.reporting import parts, scan_keys
from comfywatchman.stages import scan_digests
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install, run

UP_TO_SCAN = ("cache", "intake", "scan")


def hashed(scan_path: Path) -> list[bytes]:
    """Return the report's digest of each workflow line of scan.json, hashed here (the fresh answer)."""
    raw = scan_path.read_bytes().removesuffix(b"\n").split(b"\n")
    return [parts.line_digest(line.removesuffix(b",")) for line in raw[1:-1]]


def assert_keys_are_fresh(state: Path) -> None:
    """Digests taken through the record (and the keys kept last time) are those hashing gives, and each
    line's entry is found where the record says it starts."""
    scan = parts.ScanLines(state / "scan.json")
    assert scan_digests.load(state / "scan.json") is not None
    assert scan.digests() == hashed(state / "scan.json")
    assert scan.starts is not None
    assert [scan.entry_at(at)["path"] for at in range(len(scan.starts))] == [
        entry["path"] for _, line, _ in parts.ScanLines(state / "scan.json").lines() for entry in [scan.parse(0, line)]
    ]


def edit(comfy_tree: ComfyTree, name: str, model: str) -> None:
    comfy_tree.workflow(name, ui_workflow([ui_node(1, "LoraLoader", [model, 1, 1])]))


def test_digests_through_the_record_are_those_of_hashing_as_workflows_change(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    assert_keys_are_fresh(state)  # the keys the first scan wrote (a report would have hashed every line)
    assert len(scan_keys.load(state / scan_keys.FILE)) == len(hashed(state / "scan.json"))
    assert_keys_are_fresh(state)  # every line from the keys
    edit(comfy_tree, "c.json", "new.safetensors")  # added: every other line kept, its ``reused`` flag set
    run(context(comfy_tree, home, "c2", T0), UP_TO_SCAN)
    assert_keys_are_fresh(state)
    edit(comfy_tree, "a.json", "other.safetensors")  # edited
    run(context(comfy_tree, home, "c3", T0), UP_TO_SCAN)
    assert_keys_are_fresh(state)
    (comfy_tree.workflows / "b.json").unlink()  # removed: its key is dropped from the file
    run(context(comfy_tree, home, "c4", T0), UP_TO_SCAN)
    assert_keys_are_fresh(state)
    assert len(scan_keys.load(state / scan_keys.FILE)) == len(hashed(state / "scan.json"))


@pytest.mark.parametrize("damage", ["torn", "foreign", "edited"])
def test_a_broken_keys_file_is_ignored_and_made_again(
    damage: str, comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    assert_keys_are_fresh(state)
    keys = state / scan_keys.FILE
    data = keys.read_bytes()
    flipped = data[:-1] + (b"0" if data[-1:] != b"0" else b"1")
    broken = {"torn": data[:-10], "foreign": b"other-format\n" + data, "edited": flipped}[damage]
    keys.write_bytes(broken)
    with caplog.at_level(logging.INFO):
        assert scan_keys.load(keys) == {}
    assert str(keys) in caplog.text
    assert_keys_are_fresh(state)
    assert keys.read_bytes() == data  # made again whole


def test_the_report_is_the_same_with_the_keys_and_without_them(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    edit(comfy_tree, "c.json", "new.safetensors")
    run(context(comfy_tree, home, "c2", T0))  # the first report that compares lines keeps their keys
    edit(comfy_tree, "a.json", "other.safetensors")
    other = tmp_path / "other-home"
    shutil.copytree(home, other)
    before_report = ("cache", "intake", "scan", "search", "verify")
    run(context(comfy_tree, home, "c3", T0), before_report)
    run(context(comfy_tree, other, "c3", T0), before_report)
    (other / "state" / scan_digests.FILE).unlink()  # no record: this report hashes every line
    assert scan_keys.load(home / "state" / scan_keys.FILE)  # that one takes the kept ones
    run(context(comfy_tree, home, "c3", T0), ("report",))
    run(context(comfy_tree, other, "c3", T0), ("report",))
    for name in ("master_status.json", "master_status.md"):
        mine = (home / "output" / "reports" / "status" / name).read_text(encoding="utf-8")
        theirs = (other / "output" / "reports" / "status" / name).read_text(encoding="utf-8")
        assert mine.replace(str(home), "HOME") == theirs.replace(str(other), "HOME"), name


def test_a_report_built_from_every_line_keeps_their_keys_for_the_next_one(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0))  # the first report: every line read and hashed
    kept = scan_keys.load(state / scan_keys.FILE)
    recorded = scan_digests.load(state / "scan.json")
    assert recorded is not None
    assert [kept[key] for key in recorded.digests] == hashed(state / "scan.json")
    assert_keys_are_fresh(state)
