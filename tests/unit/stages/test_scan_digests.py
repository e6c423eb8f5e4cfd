"""The scan's record of scan.json's lines (``scan_digests``): what it says is what hashing scan.json says (kept ==
fresh) after a first scan, a scan that keeps every line, and workflows edited, added and removed; it is trusted
only for the very scan.json it was written with (a scan.json written again behind its back, edited by hand with
its mtime put back, or a record torn, edited or of another format, is not), and the search and verify give the
same outputs with it and without it. Real stages on a small install in tmp_path."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import orjson
import pytest

from comfywatchman.stages import scan_digests, scan_parts
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install, run

UP_TO_SCAN = ("cache", "intake", "scan")


def hashed(scan_path: Path) -> tuple[list[bytes], list[bytes]]:
    """Return the digest and the text of each workflow line of scan.json, hashed here (the fresh answer)."""
    raw = scan_path.read_bytes().removesuffix(b"\n").split(b"\n")
    lines = [line.removesuffix(b",") for line in raw[1:-1]]
    assert raw[-1].startswith(b"]")
    return [scan_parts.line_digest(line) for line in lines], lines


def assert_record_is_fresh(state: Path) -> None:
    """The record describes scan.json now, and says of each line what hashing it says."""
    index = scan_digests.load(state / "scan.json")
    assert index is not None
    digests, lines = hashed(state / "scan.json")
    assert index.digests == digests
    assert list(index.lines(state / "scan.json", range(len(lines))).values()) == lines


def edit(comfy_tree: ComfyTree, name: str, model: str) -> None:
    comfy_tree.workflow(name, ui_workflow([ui_node(1, "LoraLoader", [model, 1, 1])]))


def test_the_record_says_what_hashing_says_as_workflows_are_kept_edited_added_and_removed(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    assert_record_is_fresh(state)
    edit(comfy_tree, "c.json", "new.safetensors")  # added: every other line kept (its ``reused`` flag set)
    run(context(comfy_tree, home, "c2", T0), UP_TO_SCAN)
    assert_record_is_fresh(state)
    edit(comfy_tree, "a.json", "other.safetensors")  # edited
    run(context(comfy_tree, home, "c3", T0), UP_TO_SCAN)
    assert_record_is_fresh(state)
    (comfy_tree.workflows / "b.json").unlink()  # removed
    run(context(comfy_tree, home, "c4", T0), UP_TO_SCAN)
    assert_record_is_fresh(state)
    (comfy_tree.workflows / "c.json").rename(comfy_tree.workflows / "moved.json")  # its line kept, encoded again
    run(context(comfy_tree, home, "c5", T0), UP_TO_SCAN)
    assert b'"moved.json"' in (state / "scan.json").read_bytes()
    assert_record_is_fresh(state)


def test_a_record_without_its_last_one_hashes_every_line_it_writes(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    (state / scan_digests.FILE).write_bytes(b"garbage")
    edit(comfy_tree, "c.json", "new.safetensors")
    run(context(comfy_tree, home, "c2", T0), UP_TO_SCAN)
    assert_record_is_fresh(state)


def test_a_scan_json_written_again_behind_the_record_is_not_trusted(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    old = (state / scan_digests.FILE).read_bytes()
    # A crash between scan.json and its record: the next scan.json is there with the last record.
    edit(comfy_tree, "a.json", "other.safetensors")
    run(context(comfy_tree, home, "c2", T0), UP_TO_SCAN)
    (state / scan_digests.FILE).write_bytes(old)
    assert scan_digests.load(state / "scan.json") is None


def test_a_scan_json_edited_by_hand_with_its_mtime_put_back_is_not_trusted(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    scan = state / "scan.json"
    before = scan.stat()
    data = scan.read_bytes()
    at = data.index(b"missing_lora")
    with scan.open("r+b") as handle:  # in place: the same inode and size, a line's bytes changed
        handle.seek(at)
        handle.write(b"MISSING_LORA")
    os.utime(scan, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert scan.stat().st_size == before.st_size and scan.stat().st_mtime_ns == before.st_mtime_ns
    assert scan_digests.load(scan) is None  # its ctime moved


@pytest.mark.parametrize("damage", ["torn", "edited", "foreign", "not_lists", "lengths"])
def test_a_broken_record_is_ignored(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    make_install(comfy_tree)
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    path = state / scan_digests.FILE
    data = path.read_bytes()
    tag, checksum, body = data.split(b"\n", 2)
    if damage == "torn":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "edited":
        path.write_bytes(data.replace(body[-40:-30], b"0" * 10))
    elif damage == "foreign":
        path.write_bytes(b"scan-digests-0\n" + checksum + b"\n" + body)
    else:  # whole, with its checksum, but not what a record holds
        document = orjson.loads(body)
        if damage == "not_lists":
            document["digests"] = "x"
        else:
            document["lengths"] = document["lengths"][:-1]
        body = orjson.dumps(document)
        path.write_bytes(tag + b"\n" + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body)
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages.scan_digests"):
        assert scan_digests.load(state / "scan.json") is None
    assert scan_digests.FILE in caplog.text


def test_search_and_verify_give_the_same_outputs_with_the_record_and_without_it(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    edit(comfy_tree, "c.json", "missing_lora.safetensors")  # one workflow added: the searches made from the last
    run(context(comfy_tree, home, "c2", T0), UP_TO_SCAN)
    other = tmp_path / "other-home"
    shutil.copytree(home, other)
    (other / "state" / scan_digests.FILE).unlink()  # hashed there, read from the record here
    assert scan_digests.load(home / "state" / "scan.json") is not None
    for where in (home, other):
        run(context(comfy_tree, where, "c2", T0), ("search", "verify"))
    for name in ("search.json", "download_queue.json", "search_parts.pack", "verify_parts.pack"):
        assert (home / "state" / name).read_bytes() == (other / "state" / name).read_bytes(), name
    for name in ("verify.json", "verify_inputs.json"):  # bar the fingerprint: the stats of the files of each home
        made, hashed_here = (orjson.loads((h / "state" / name).read_bytes()) for h in (home, other))
        assert made.pop("fingerprint") and hashed_here.pop("fingerprint")
        for document in (made, hashed_here):  # how long hashing took is the machine's clock
            document.get("progress", {}).pop("hash_seconds", None)
            document.get("search_files", {}).pop("identity", None)  # the identities of each home's own files
        assert made == hashed_here, name


def test_the_recorder_asked_for_the_reports_digests_gives_each_line_s_from_one_hash_or_the_last_keys(
    comfy_tree: ComfyTree, home: Path
) -> None:
    from comfywatchman.reporting import parts

    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), UP_TO_SCAN)
    _, lines = hashed(home / "state" / "scan.json")
    recorder = scan_digests.Recorder(home / "state" / "elsewhere.json")  # no last record
    recorder.keep_report_keys({scan_parts.line_digest(lines[1]): b"k" * 32})
    recorder.add(lines[0])  # hashed here
    recorder.add_copied(0, len(lines[1]), 0)  # copied, no digest known: hashed by flush_copied
    recorder.flush_copied(lines[1] + b",\n")
    recorder._last = {7: scan_parts.line_digest(lines[1])}
    recorder.add_copied(0, len(lines[1]), 7)  # copied with its digest known: the report's from the last keys
    recorder.add(lines[0], 8)  # copied from a line the last record does not know: hashed
    scan_keys = [scan_parts.line_digest(line) for line in (lines[0], lines[1], lines[1], lines[0])]
    report_keys = [parts.line_digest(lines[0]), parts.line_digest(lines[1]), b"k" * 32, parts.line_digest(lines[0])]
    assert recorder.digests == [key.decode() for key in scan_keys]
    assert recorder.report_pairs() == list(zip(scan_keys, report_keys, strict=True))
    unknown = scan_digests.Recorder(home / "state" / "elsewhere.json")
    unknown.keep_report_keys({})
    unknown._last = {7: scan_parts.line_digest(lines[1])}
    unknown.add_copied(0, len(lines[1]), 7)  # neither key known: left out
    unknown.add(lines[0])
    assert unknown.report_pairs() == [(scan_keys[0], report_keys[0])]
    assert scan_digests.Recorder(home / "state" / "elsewhere.json").report_pairs() == []  # not asked for
