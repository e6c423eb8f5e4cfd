"""What a stage takes from each workflow of scan.json, kept by the bytes of its line: a line seen before is not
parsed again; a torn pack, another format or another layout of scan.json costs a full read, never a wrong part;
a broken scan.json line is an error naming the line. Real scan.json files from the scan stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.stages import scan_parts
from comfywatchman.stages.scan_parts import ScanParts
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install, run


def take(workflow: dict[str, Any]) -> list[Any]:
    return [Path(workflow["path"]).name, sorted(m["name"] for m in workflow["models"])]


def scanned(comfy_tree: ComfyTree, home: Path) -> Path:
    run(context(comfy_tree, home, "c1", T0), ("cache", "intake", "scan"))
    return home / "state" / "scan.json"


def read(pack: Path, scan: Path, tag: str = "t1") -> tuple[list[Any], int]:
    parts = ScanParts(pack, tag, take)
    found = list(parts.read(scan))
    return found, parts.parsed


EXPECTED = [["a.json", ["declared.safetensors", "missing_lora.safetensors"]], ["b.json", []]]


def test_a_line_seen_before_is_not_parsed_again(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    assert read(pack, scan) == (EXPECTED, 2)
    assert read(pack, scan) == (EXPECTED, 0)
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["new_up.pth"])]))
    run(context(comfy_tree, home, "c2", T0), ("cache", "intake", "scan"))
    assert read(pack, scan) == ([EXPECTED[0], ["b.json", ["new_up.pth"]]], 1)
    assert read(pack, scan, tag="t2") == ([EXPECTED[0], ["b.json", ["new_up.pth"]]], 2)  # another format


def test_a_torn_or_edited_pack_line_is_read_again_from_scan_json(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    lines = pack.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b"missing_lora", b"missing_LORA")  # edited: its checksum no longer holds
    lines[2] = lines[2][:20]  # torn
    pack.write_bytes(b"\n".join(lines))
    assert read(pack, scan) == (EXPECTED, 2)
    assert read(pack, scan) == (EXPECTED, 0)  # and written again whole


def test_scan_json_in_another_layout_is_read_whole(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    artifacts.write(scan, artifacts.read(scan, "scan"), "scan", indent=2)
    assert read(pack, scan) == (EXPECTED, 2)


def test_a_broken_line_of_scan_json_names_the_file_and_line(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    lines = scan.read_bytes().split(b"\n")
    good = lines[2]
    lines[2] = good.replace(b'"format":"ui"', b'"format":-', 1)
    scan.write_bytes(b"\n".join(lines))
    with pytest.raises(ArtifactError, match=r"scan\.json: line 3 is not valid JSON"):
        read(pack, scan)
    lines[2] = good.replace(b'"format":"ui"', b'"format":17', 1)
    scan.write_bytes(b"\n".join(lines))
    with pytest.raises(ArtifactError, match=r"scan\.json \(line 3\)"):
        read(pack, scan)
    scan.write_bytes(b"\n".join(lines[:3]))
    with pytest.raises(ArtifactError, match=r"scan\.json: not valid JSON"):  # a torn write
        read(pack, scan)


def test_a_changed_workflow_adds_its_line_and_a_pack_mostly_stale_is_rewritten(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_parts, "STALE_SHARE", 1.0)  # two workflows: rewritten past two stale lines
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    before = pack.read_bytes()
    for number, name in enumerate(("up_1.pth", "up_2.pth"), start=1):
        comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", [name])]))
        run(context(comfy_tree, home, f"c{number + 1}", T0), ("cache", "intake", "scan"))
        assert read(pack, scan) == ([EXPECTED[0], ["b.json", [name]]], 1)
        after = pack.read_bytes()
        assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1  # appended
        assert read(pack, scan) == ([EXPECTED[0], ["b.json", [name]]], 0)
        before = after
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["up_3.pth"])]))
    run(context(comfy_tree, home, "c4", T0), ("cache", "intake", "scan"))
    assert read(pack, scan) == ([EXPECTED[0], ["b.json", ["up_3.pth"]]], 1)
    assert pack.read_bytes().count(b"\n") == 3  # three stale lines of b.json: rewritten, the tag and two lines
    assert read(pack, scan) == ([EXPECTED[0], ["b.json", ["up_3.pth"]]], 0)


def test_a_line_appended_after_a_torn_one_starts_a_line_of_its_own(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_parts, "STALE_SHARE", 1.0)
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    pack.write_bytes(pack.read_bytes()[:-30])  # the last line (b.json's) torn, without its newline
    assert read(pack, scan) == (EXPECTED, 1)
    assert pack.read_bytes().endswith(b"\n") and read(pack, scan) == (EXPECTED, 0)


# The scan fills the packs of the stages after it (``Primer``): a primed pack is the one the stage would make.


def entries(scan: Path) -> list[tuple[bytes, dict[str, Any]]]:
    """Return each workflow line of scan.json at ``scan`` as (its digest, its entry)."""
    lines = scan.read_bytes().split(b"\n")[1:-2]
    return [(scan_parts.line_digest(line), orjson.loads(line.rstrip(b","))) for line in lines]


def prime(pack: Path, scan: Path, tag: str = "t1", how: Any = take) -> None:
    primer = scan_parts.Primer([(pack, tag, how)])
    for digest, entry in entries(scan):
        primer.add(digest, scan_parts.payloads(primer.takes, entry))
    primer.finish()


def test_a_primed_pack_gives_every_part_without_parsing_a_line(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    primed, made = home / "state" / "primed.pack", home / "state" / "made.pack"
    prime(primed, scan)
    assert read(primed, scan) == (EXPECTED, 0)
    read(made, scan)  # the stage's own pack, parsing each line
    assert sorted(primed.read_bytes().split(b"\n")) == sorted(made.read_bytes().split(b"\n"))
    assert [p.name for p in primed.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_primed_parts_are_appended_to_a_pack_of_the_tag_and_replace_one_of_another(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    before = pack.read_bytes()
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["new_up.pth"])]))
    run(context(comfy_tree, home, "c2", T0), ("cache", "intake", "scan"))
    primer = scan_parts.Primer([(pack, "t1", take)])
    digest, entry = entries(scan)[1]
    primer.add(digest, scan_parts.payloads(primer.takes, entry))
    primer.finish()
    after = pack.read_bytes()
    assert after.startswith(before) and after.count(b"\n") == before.count(b"\n") + 1
    assert read(pack, scan) == ([EXPECTED[0], ["b.json", ["new_up.pth"]]], 0)
    prime(pack, scan, tag="t2")  # another format: the pack is the primed one alone
    assert pack.read_bytes().startswith(b"t2\n") and pack.read_bytes().count(b"\n") == 3
    assert read(pack, scan, tag="t2") == ([EXPECTED[0], ["b.json", ["new_up.pth"]]], 0)


def test_a_part_that_cannot_be_taken_is_left_to_the_stage(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"

    def picky(workflow: dict[str, Any]) -> list[Any]:
        if workflow["path"].endswith("b.json"):
            raise KeyError("models")
        return take(workflow)

    prime(pack, scan, how=picky)
    assert read(pack, scan) == (EXPECTED, 1)  # b.json parsed by the stage


def test_a_scan_stopped_before_finish_leaves_the_pack_as_it_was_and_no_temp_file(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    read(pack, scan)
    before = pack.read_bytes()
    primer = scan_parts.Primer([(pack, "t1", take)])
    for digest, entry in entries(scan):
        primer.add(digest, scan_parts.payloads(primer.takes, {**entry, "path": "/elsewhere/x.json"}))
    primer.close()
    assert pack.read_bytes() == before
    assert sorted(p.name for p in pack.parent.iterdir() if p.name.endswith(".tmp")) == []


def test_a_pack_that_cannot_be_written_is_left_to_its_stage(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "missing-folder" / "test_parts.pack"
    prime(pack, scan)  # no folder: nothing written, nothing raised
    assert not pack.exists()
    assert read(pack.parent.parent / "test_parts.pack", scan) == (EXPECTED, 2)


def test_a_primer_given_no_part_writes_nothing(home: Path) -> None:
    pack = home / "state" / "test_parts.pack"
    pack.parent.mkdir(parents=True)
    primer = scan_parts.Primer([(pack, "t1", take)])
    primer.finish()
    primer.close()
    assert list(pack.parent.iterdir()) == []


def test_a_pack_whose_temp_file_cannot_be_written_is_left_to_its_stage(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    full, fine = home / "state" / "full.pack", home / "state" / "fine.pack"
    primer = scan_parts.Primer([(full, "t1", take), (fine, "t1", take)])
    lines = entries(scan)
    primer.add(lines[0][0], scan_parts.payloads(primer.takes, lines[0][1]))
    assert primer._files is not None
    handle, _ = primer._files[0]

    def disk_full(data: bytes) -> int:
        raise OSError(28, "No space left on device")

    handle.write = disk_full  # the next write of the first pack fails, as on a full disk
    primer.add(lines[1][0], scan_parts.payloads(primer.takes, lines[1][1]))
    primer.finish()
    assert not full.exists()
    assert read(fine, scan) == (EXPECTED, 0)
    assert read(full, scan) == (EXPECTED, 2)
    assert [p.name for p in full.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_pack_in_whole_is_replaced_by_the_parts_of_this_scan_alone(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    scan = scanned(comfy_tree, home)
    pack = home / "state" / "test_parts.pack"
    prime(pack, scan)
    primer = scan_parts.Primer([(pack, "t1", take)], whole=[pack])
    digest, entry = entries(scan)[1]
    primer.add(digest, scan_parts.payloads(primer.takes, entry))
    primer.finish()
    assert pack.read_bytes().count(b"\n") == 2  # the tag and b.json's part: a.json's is gone
    assert read(pack, scan) == (EXPECTED, 1)


# Both digests of a line at once (``both_digests``): each the one its own function gives.


def old_report_digest(line: bytes) -> bytes:
    """The report's digest as it was first written: the first ``"reused":true`` set false, the first file
    sha256 followed by its source left out (the same as ``report_cut``'s on an entry as the scan writes it)."""
    import hashlib
    import re

    text = line.replace(b'"reused":true', b'"reused":false', 1)
    text = re.sub(rb'"sha256":"[0-9a-f]{64}","source":', b'"source":', text, count=1)
    return hashlib.sha256(text).hexdigest()[:32].encode("ascii")


def test_both_digests_are_those_of_the_scan_and_the_report_for_every_line(comfy_tree: ComfyTree, home: Path) -> None:
    from comfywatchman.reporting import parts

    make_install(comfy_tree)
    comfy_tree.workflow("c.json", ui_workflow([ui_node(1, "NoSuchNode", [])]))
    comfy_tree.raw_workflow("torn.json", b'{"nodes": [')
    comfy_tree.model("vae", "have.safetensors")
    have = {"name": "have.safetensors", "url": "https://example.com/have.safetensors", "directory": "vae"}
    have |= {"hash": "b" * 64, "hash_type": "sha256"}
    comfy_tree.workflow(
        "d.json", ui_workflow([ui_node(1, "VAELoader", ["have.safetensors"], properties={"models": [have]})])
    )
    lines = [line.removesuffix(b",") for line in scanned(comfy_tree, home).read_bytes().split(b"\n")[1:-2]]
    assert any(b'"declared":[{"sha256":"' in line for line in lines)  # a declared hash before the entry's own
    odd = [
        b'{"a":1}',  # no flag: the report's and the scan's digests of the whole text
        b'{"reused":true,"x":"y"}',  # a flag, no sha256 after it
        b'{"b":{"reused":true},"reused":false,"sha256":"' + b"a" * 64 + b'","source":"s","workflow":"w"}',
        b'{"reused":"maybe","sha256":"' + b"a" * 64 + b'","source":"s","workflow":"w"}',
    ]
    for line in [*lines, *(line.replace(b'"reused":false', b'"reused":true') for line in lines), *odd]:
        assert scan_parts.both_digests(line) == (scan_parts.line_digest(line), parts.line_digest(line)), line
        padded = b"xx" + line + b",\nyy"  # a line inside a run of copied lines
        assert scan_parts.both_digests(padded, 2, 2 + len(line)) == scan_parts.both_digests(line)
    for line in lines:  # entries as the scan writes them: the digest the report always gave them
        assert parts.line_digest(line) == old_report_digest(line)
        flipped = line.replace(b'"reused":false', b'"reused":true')
        assert parts.line_digest(flipped) == parts.line_digest(line)
    # What the report leaves out besides the flag: the file's own sha256 (a node's title edited), not another.
    line = next(line for line in lines if b'"declared":[{"sha256":"' in line)
    at = line.rindex(b'"sha256":"') + len(b'"sha256":"')
    other_file = line[:at] + b"0" * 64 + line[at + 64 :]
    assert parts.line_digest(other_file) == parts.line_digest(line)
    assert scan_parts.line_digest(other_file) != scan_parts.line_digest(line)
    at = line.index(b'"sha256":"') + len(b'"sha256":"')  # a declared file's
    assert parts.line_digest(line[:at] + b"0" * 64 + line[at + 64 :]) != parts.line_digest(line)
