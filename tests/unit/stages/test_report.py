"""The report stage reuses each unchanged workflow's part of the last report (``state/report_parts.pack``), and
what it writes from kept parts is, byte for byte, what it writes from scratch: real stages on a small install."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from comfywatchman import artifacts, stage_inputs
from comfywatchman.reporting import answers, broken_models, kept_index, parts, status_file
from comfywatchman.stages import report as report_stage
from comfywatchman.stages import scan as scan_stage
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install, report_files, run


def more_workflows(tree: ComfyTree) -> None:
    """Add a workflow missing a node type, one missing a file another one misses too, and an unreadable one."""
    tree.workflow("c.json", ui_workflow([ui_node(1, "NoSuchNodeAnywhere", [])]))
    tree.workflow("d.json", ui_workflow([ui_node(1, "LoraLoader", ["missing_lora.safetensors", 1, 1])]))
    tree.raw_workflow("torn.json", b'{"nodes": [{"id": 1, "type": "KSam')


def test_one_changed_workflow_is_worked_out_again_alone_and_the_report_is_the_one_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    more_workflows(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    state = home / "state"
    history_before = (state / "report_history.json").read_bytes()
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]), ui_node(2, "VAELoader", ["new.safetensors"])]
        ),
    )
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    with caplog.at_level(logging.DEBUG, logger="comfywatchman"):
        run(ctx)
    assert "report: 4 of 5 workflows reused" in caplog.text
    # search.json changed (new.safetensors is searched now): its other results are taken as they were.
    assert re.search(r"answers: (\d+) of \1 search results reused", caplog.text) is None
    assert re.search(r"answers: [1-9]\d* of \d+ search results reused", caplog.text)
    status, page, _ = report_files(home)
    kept = status.read_bytes(), page.read_text(encoding="utf-8")
    report = artifacts.read(status, "master_status")
    b = next(w for w in report["workflows"] if w["workflow"] == "b.json")
    assert [(m["name"], m["action"]) for m in b["missing_models"]] == [
        ("new.safetensors", "search:vae/new.safetensors")
    ]

    # The same report from scratch: no kept parts nor answers, and the readiness history the first report left.
    (state / parts.FILE).unlink()
    (state / answers.KEPT).unlink()
    stage_inputs.path_of(state, "report").unlink()
    (state / "report_history.json").write_bytes(history_before)
    run(ctx, ("report",))
    assert (status.read_bytes(), page.read_text(encoding="utf-8")) == kept


def test_a_torn_or_edited_parts_file_costs_a_full_report_never_a_wrong_one(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    more_workflows(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    state = home / "state"
    status = report_files(home)[0]
    expected = artifacts.read(status, "master_status")["workflows"]
    store = state / parts.FILE
    lines = store.read_bytes().split(b"\n")
    # An edited payload (its checksum no longer matches) and a torn last line.
    lines[0] = lines[0].replace(b'"readiness":"', b'"readiness":"x', 1)
    store.write_bytes(b"\n".join(lines)[:-40])
    stage_inputs.path_of(state, "report").unlink()
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), ("report",))
    again = artifacts.read(status, "master_status")
    now = (T0 + timedelta(hours=1)).isoformat(timespec="seconds")
    resolved = ("ready", "resolvable")
    assert again["workflows"] == [{**w, "last_resolved_at": now} if w["readiness"] in resolved else w for w in expected]
    assert len(store.read_bytes().splitlines()) == 5


def test_the_summary_is_read_from_the_last_line_of_master_status(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    status = report_files(home)[0]
    lines = status.read_bytes().splitlines()
    assert lines[0] == b'{"workflows":[' and lines[-1].startswith(b'],"action_totals":')
    head = status_file.read_head(status)
    whole = artifacts.read(status, "master_status")
    assert head == {**whole, "workflows": [], "actions": []}
    assert list(status_file.items(status, "workflows")) == whole["workflows"]
    assert list(status_file.items(status, "actions")) == whole["actions"]


def test_a_workflow_edited_without_changing_what_it_needs_leaves_the_findings_as_they_are(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    status, page, history = report_files(home)
    before = status.read_bytes(), status.stat().st_mtime_ns, history.read_bytes()
    # The same nodes, the canvas moved: a new sha256, the same needs.
    comfy_tree.workflow(
        "b.json",
        ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])], extra={"ds": {"scale": 2}}),
    )
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)))
    assert (status.read_bytes(), status.stat().st_mtime_ns, history.read_bytes()) == before
    text = page.read_text(encoding="utf-8")
    assert "· cycle `c2`" in text
    assert "Nothing the findings depend on changed since cycle `c1` (2026-05-01T12:00:00+00:00)" in text

    # What a workflow needs changed: the findings are worked out again.
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["other.safetensors"])]))
    run(context(comfy_tree, home, "c3", T0 + timedelta(hours=2)))
    report = artifacts.read(status, "master_status")
    assert report["cycle_id"] == "c3"
    b = next(w for w in report["workflows"] if w["workflow"] == "b.json")
    assert [m["name"] for m in b["missing_models"]] == ["other.safetensors"]


def test_the_header_check_in_a_process_of_its_own_gives_the_report_made_in_one(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A large install checks its files' headers in a child process beside the report: the same report, byte for
    # byte, as the one that checks them itself (a cut file and an unreadable one among them).
    make_install(comfy_tree)
    comfy_tree.model("loras", "cut.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{}")
    comfy_tree.model("loras", "odd.sft").write_bytes(b"\x04\0\0\0\0\0\0\0nope")
    spawned: list[object] = []
    spawn = broken_models._spawn
    monkeypatch.setattr(broken_models, "_spawn", lambda state: spawned.append(state) or spawn(state))
    monkeypatch.setattr(broken_models, "WORTH_A_PROCESS", 0)
    ctx = context(comfy_tree, home, "c1", T0)
    run(ctx)
    assert spawned == [home / "state" / "model_cache.json"]
    status, page, history = report_files(home)
    made = [p.read_bytes() for p in (status, page, history)]
    broken = status_file.read_head(status)["broken_models"]
    assert {b["name"]: b["reason"].split(":")[0] for b in broken} == {
        "cut.safetensors": "truncated",
        "odd.sft": "broken",
    }

    monkeypatch.setattr(broken_models, "WORTH_A_PROCESS", 1 << 60)
    for kept in (parts.FILE, answers.KEPT):
        (home / "state" / kept).unlink()
    stage_inputs.path_of(home / "state", "report").unlink()
    history.write_bytes(b'{"workflows": {}}')
    run(ctx, ("report",))
    assert spawned == [home / "state" / "model_cache.json"]  # checked in the report this time
    assert [p.read_bytes() for p in (status, page, history)] == made


def test_each_scan_line_finds_its_kept_place_once_as_the_index_walk_does() -> None:
    index = kept_index.Index({"seeds": []}, [b"aa [1]\n", b"bb [2]\n", b"cc [3]\n"])
    for digests in ([b"cc", b"xx", b"aa"], [b"aa", b"aa", b"bb"], [b"bb", b"bb", b"bb"], []):
        assert report_stage._places(index, digests) == [place for _, place in kept_index.walk(index, digests)]


# The scan primes the report (``scan.primes_report``): each line's digest and what the report reads of each entry
# made, so the report reads no line of scan.json. What it cannot have is read from scan.json, as before.


def primed_install(tree: ComfyTree) -> None:
    """``make_install`` and ``more_workflows``, and a workflow needing a disabled pack's node and missing a file
    only a muted node names."""
    make_install(tree)
    more_workflows(tree)
    tree.pack("ComfyUI-Old.disabled", ["OldNode"])
    tree.workflow(
        "e.json", ui_workflow([ui_node(1, "OldNode", []), ui_node(2, "VAELoader", ["muted.safetensors"], mode=4)])
    )


BEFORE_REPORT = ("cache", "intake", "scan", "search", "verify")


def counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make the report note the number of each scan.json line it parses from now on; return that list."""
    parsed: list[int] = []
    parse = parts.ScanLines.parse

    def counted(self: parts.ScanLines, number: int, line: bytes) -> dict[str, object]:
        parsed.append(number)
        return parse(self, number, line)

    monkeypatch.setattr(parts.ScanLines, "parse", counted)
    return parsed


def outputs(home: Path) -> list[str]:
    """master_status.json and .md, the home's path taken out."""
    status, page, _ = report_files(home)
    return [p.read_text(encoding="utf-8").replace(str(home), "HOME") for p in (status, page)]


def unprimed_report(comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Return the outputs of a cycle whose scan primes nothing for the report."""
    home.mkdir()
    with monkeypatch.context() as patch:
        patch.setattr(scan_stage, "primes_report", lambda state, made: False)
        run(context(comfy_tree, home, "c1", T0), BEFORE_REPORT)
    assert not (home / "state" / "report_scan_parts.pack").exists()
    parsed = counting_parses(monkeypatch)
    run(context(comfy_tree, home, "c1", T0), ("report",))
    assert len(parsed) == 6  # every line
    monkeypatch.undo()
    return outputs(home)


def test_a_report_the_scan_primed_parses_no_line_it_made_and_is_the_one_made_from_the_lines(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primed_install(comfy_tree)
    homes = [tmp_path / "primed", tmp_path / "unprimed"]
    expected = unprimed_report(comfy_tree, homes[1], monkeypatch)
    homes[0].mkdir()
    run(context(comfy_tree, homes[0], "c1", T0), BEFORE_REPORT)
    parsed = counting_parses(monkeypatch)
    run(context(comfy_tree, homes[0], "c1", T0), ("report",))
    lines = (homes[0] / "state" / "scan.json").read_bytes().split(b"\n")
    assert [b"torn.json" in lines[number - 1] for number in parsed] == [True]  # its error: no entry made
    assert outputs(homes[0]) == expected
    # The next report, every workflow unchanged, as before: the last report stands.
    run(context(comfy_tree, homes[0], "c2", T0 + timedelta(hours=1)))
    assert len(parsed) == 1


@pytest.mark.parametrize("damage", ["missing", "torn", "edited", "foreign", "no keys", "shuffled"])
def test_a_missing_torn_edited_or_foreign_pack_is_read_around(
    damage: str, comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    primed_install(comfy_tree)
    home = tmp_path / "home"
    expected = unprimed_report(comfy_tree, tmp_path / "unprimed", monkeypatch)
    home.mkdir()
    run(context(comfy_tree, home, "c1", T0), BEFORE_REPORT)
    state = home / "state"
    pack = state / "report_scan_parts.pack"
    data = pack.read_bytes()
    if damage == "missing":
        pack.unlink()
    elif damage == "torn":
        pack.write_bytes(data[:-30])  # the last line cut short
    elif damage == "edited":
        pack.write_bytes(data.replace(b'"class_type":"NoSuchNodeAnywhere"', b'"class_type":"NoSuchNodeAnywhera"'))
    elif damage == "foreign":
        pack.write_bytes(b"report-scan-parts-0" + data[data.index(b"\n") :])
    elif damage == "shuffled":  # not in scan.json's order (parts appended by later scans): each part still found
        tag, *lines = data.rstrip(b"\n").split(b"\n")
        assert len(lines) > 2
        pack.write_bytes(b"\n".join([tag, *reversed(lines)]) + b"\n")
    else:
        (state / "report_scan_keys.bin").unlink()
    parsed = counting_parses(monkeypatch)
    run(context(comfy_tree, home, "c1", T0), ("report",))
    assert len(parsed) == {"torn": 2, "edited": 2, "shuffled": 1}.get(damage, 6)
    assert outputs(home) == expected


def test_a_full_report_after_a_few_changed_parses_the_lines_the_scan_made_then_alone(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scan of one changed workflow leaves the report's pack as it was (the report reads that line itself);
    # a report that works every workflow out then still takes the others from it.
    primed_install(comfy_tree)
    homes = [tmp_path / "primed", tmp_path / "unprimed"]
    for home in homes:
        home.mkdir()
        run(context(comfy_tree, home, "c1", T0))
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["new.safetensors"])]))
    found = []
    for home in homes:
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), BEFORE_REPORT)
        for name in (parts.FILE, kept_index.FILE):  # no kept records: every workflow worked out
            (home / "state" / name).unlink()
        if home == homes[1]:
            (home / "state" / "report_scan_parts.pack").unlink()
        parsed = counting_parses(monkeypatch)
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), ("report",))
        found.append(len(parsed))
        monkeypatch.undo()
    assert found == [2, 6]  # b.json's line and the unreadable one's; every line
    assert outputs(homes[0]) == outputs(homes[1])
