"""A report made from the kept index (``state/report_index.pack``) and the workflows that changed is, byte for
byte, the report made from scratch: real stages on a small install, through edits, adds, removals, a change of
which workflow seeds an action, a changed search answer, and a broken index."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from comfywatchman import artifacts, stage_inputs
from comfywatchman.reporting import answers, kept_actions, kept_index, parts, status_file, status_report
from comfywatchman.stages.context import StageContext
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.reporting.test_status_file import ACTION, HEAD, WORKFLOW
from tests.unit.stages.test_report import more_workflows
from tests.unit.stages.test_reuse import T0, context, make_install, report_files, run

INCREMENTAL = "workflows reused from report_index.pack"
KEPT_ACTIONS = "actions read from report_actions.bin"
DELTA = "workflows worked out again"


def pack_node(registry_id: str) -> dict[str, object]:
    """Return a node of a pack the install lacks, whose workflow names the pack's registry id."""
    return ui_node(1, "PackNode", [], properties={"cnr_id": registry_id, "aux_id": "someone/pack"})


def install(tree: ComfyTree, home: Path) -> bytes:
    """Make the install (two workflows need the same pack, each naming another registry id: the first in scan
    order seeds the action), run a first cycle; return the readiness history it left."""
    make_install(tree)
    more_workflows(tree)
    tree.workflow("e1.json", ui_workflow([pack_node("pack-one")]))
    tree.workflow("e2.json", ui_workflow([pack_node("pack-two")]))
    run(context(tree, home, "c1", T0))
    assert (home / "state" / kept_index.FILE).is_file()
    return (home / "state" / "report_history.json").read_bytes()


def outputs(home: Path) -> tuple[bytes, bytes, bytes]:
    status, page, history = report_files(home)
    return status.read_bytes(), page.read_bytes(), history.read_bytes()


def from_scratch(ctx: StageContext, home: Path, history_before: bytes) -> tuple[bytes, bytes, bytes]:
    """Return the report of ``ctx``'s cycle made from scratch: nothing kept, the history the cycle before left."""
    state = home / "state"
    for name in (kept_index.FILE, kept_actions.FILE, parts.FILE, answers.KEPT):
        (state / name).unlink(missing_ok=True)
    stage_inputs.path_of(state, "report").unlink()
    (state / "report_history.json").write_bytes(history_before)
    run(ctx, ("report",))
    return outputs(home)


def incremental_cycle(
    tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, cycle: str, hours: int, stages: tuple[str, ...] = ()
) -> tuple[StageContext, tuple[bytes, bytes, bytes]]:
    """Run a cycle (``stages``, all by default) and check its report was made from the kept index; return its
    context and outputs."""
    ctx = context(tree, home, cycle, T0 + timedelta(hours=hours))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="comfywatchman"):
        run(ctx, *([stages] if stages else []))
    assert INCREMENTAL in caplog.text
    assert KEPT_ACTIONS in caplog.text  # the page made of the kept actions (``kept_actions.save``)
    assert DELTA in caplog.text  # the other workflows' parts taken from the kept whole (``kept_whole``)
    assert "action lines copied" in caplog.text  # where the last report's action lines are, kept with it
    return ctx, outputs(home)


def action(home: Path, aid: str) -> dict[str, object]:
    report = artifacts.read(report_files(home)[0], "master_status")
    found: dict[str, object] = next(a for a in report["actions"] if a["id"] == aid)
    return found


PACK = "install_pack:https://github.com/someone/pack"


def test_an_edited_workflow_gives_the_report_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(comfy_tree, home)
    history = (home / "state" / "report_history.json").read_bytes()
    b = [ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]), ui_node(2, "VAELoader", ["new.safetensors"])]
    comfy_tree.workflow("b.json", ui_workflow(b))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert "report: 6 of 7 " + INCREMENTAL in caplog.text
    assert b"new.safetensors" in made[0]
    # And the cycle after (b.json back as it was: the index kept by an incremental report serves again).
    history = made[2]
    comfy_tree.workflow("b.json", ui_workflow(b[:1]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c3", 3)
    assert b"new.safetensors" not in made[0]
    assert from_scratch(ctx, home, history) == made


def test_a_quiet_cycle_between_leaves_the_index_usable(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install(comfy_tree, home)
    # Nothing changed: the page alone is rendered again (its tail says this cycle).
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)))
    history = (home / "state" / "report_history.json").read_bytes()
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["other.safetensors"])]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c3", 2)
    assert from_scratch(ctx, home, history) == made


def test_an_edit_of_the_first_report_cycle_matches_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["other.safetensors"])]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert from_scratch(ctx, home, history) == made


def test_an_added_and_a_removed_workflow_give_the_report_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    comfy_tree.workflow("aa.json", ui_workflow([ui_node(1, "LoraLoader", ["missing_lora.safetensors", 1, 1])]))
    (comfy_tree.workflows / "d.json").unlink()
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert b'"aa.json"' in made[0] and b'"d.json"' not in made[0]
    assert from_scratch(ctx, home, history) == made


def test_removing_the_workflow_that_seeds_an_action_seeds_it_from_the_next_one(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    assert action(home, PACK)["registry_id"] == "pack-one"
    # e1.json (first in scan order) no longer needs the pack: e2.json's registry id is the action's now.
    comfy_tree.workflow("e1.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert action(home, PACK)["registry_id"] == "pack-two"
    assert from_scratch(ctx, home, history) == made
    # e1.json needs it again: it seeds the action again.
    history = made[2]
    comfy_tree.workflow("e1.json", ui_workflow([pack_node("pack-one")]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c3", 3)
    assert action(home, PACK)["registry_id"] == "pack-one"
    assert from_scratch(ctx, home, history) == made


def test_a_changed_search_answer_gives_the_report_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    # The search answers otherwise for the missing LoRA (a.json and d.json need it): not found anywhere.
    search = home / "state" / "search.json"
    lines = search.read_bytes().split(b"\n")
    for number, line in enumerate(lines):
        if b'"name":"missing_lora.safetensors"' in line:
            result = orjson.loads(line.removesuffix(b","))
            result.update(status="NOT_FOUND", reason="no source has it")
            lines[number] = orjson.dumps(result, option=orjson.OPT_SORT_KEYS) + line[len(line.rstrip(b",")) :]
    search.write_bytes(b"\n".join(lines))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2, ("report",))
    assert b"find_manually:loras/missing_lora.safetensors" in made[0]
    assert from_scratch(ctx, home, history) == made


def test_a_broken_or_foreign_index_costs_a_full_report_never_a_wrong_one(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    index = home / "state" / kept_index.FILE
    torn = index.read_bytes()[:100]
    for hours, name in enumerate(("other.safetensors", "third.safetensors"), start=2):
        # A torn index, then one whose workflows are not contributions.
        lines = index.read_bytes().split(b"\n")
        foreign = b"\n".join([lines[0], *(line.split(b" ")[0] + b" [1]" for line in lines[1:-2]), *lines[-2:]])
        index.write_bytes(torn if hours == 2 else foreign)
        comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", [name])]))
        ctx = context(comfy_tree, home, f"c{hours}", T0 + timedelta(hours=hours))
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="comfywatchman"):
            run(ctx)
        assert INCREMENTAL not in caplog.text
        made = outputs(home)
        assert name.encode() in made[0]
        assert from_scratch(ctx, home, history) == made
        history = made[2]


def test_a_damaged_whole_costs_a_full_report_never_a_wrong_one(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    history = install(comfy_tree, home)
    index = home / "state" / kept_index.FILE
    data = index.read_bytes()
    start = data.index(b"\n") + 1  # the whole follows the first line
    index.write_bytes(data[:start] + bytes([data[start] ^ 1]) + data[start + 1 :])
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["other.safetensors"])]))
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="comfywatchman"):
        run(ctx)
    assert INCREMENTAL not in caplog.text and "not a whole index of this version" in caplog.text
    assert from_scratch(ctx, home, history) == outputs(home)


def test_an_edit_that_moves_a_workflow_between_shared_actions_gives_the_report_made_from_scratch(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # d.json needs the LoRA a.json needs too, then a.json's VAE instead: both actions are made again with
    # a.json (a kept workflow) gathered into them, and the action d.json leaves keeps a.json alone.
    history = install(comfy_tree, home)
    lora = "search:loras/missing_lora.safetensors"
    assert action(home, lora)["workflows"] == ["a.json", "d.json"]
    comfy_tree.workflow("d.json", ui_workflow([ui_node(1, "VAELoader", ["declared.safetensors"])]))
    ctx, made = incremental_cycle(comfy_tree, home, caplog, "c2", 2)
    assert action(home, lora)["workflows"] == ["a.json"]
    vae = next(a for a in artifacts.read(report_files(home)[0], "master_status")["actions"] if a["folder"] == "vae")
    assert vae["workflows"] == ["a.json", "d.json"]
    assert from_scratch(ctx, home, history) == made


def write_report(path: Path, actions: int) -> list[bytes]:
    """Write a master_status.json of one workflow and ``actions`` actions (status_file.Writer's layout), in
    blocks (``status_file.Writer.action_blocks``); return the actions' lines."""
    lines = [status_file.part({**ACTION, "id": f"fix_workflow:{n}"}, "action", "test") for n in range(actions)]
    with status_file.Writer(path) as writer:
        writer.workflow(status_file.part(WORKFLOW, "workflow", "test"))
        writer.action_blocks([(lines[0], 1), (b"", 0), (b",\n".join(lines[1:]), len(lines) - 1)])
        writer.finish(HEAD)
    return lines


@pytest.mark.parametrize("actions", [1, 2, 7, 40])
@pytest.mark.parametrize("size", [1, 150, 1 << 18])
def test_the_last_reports_actions_are_read_a_list_at_a_time_as_they_were_written(
    tmp_path: Path, actions: int, size: int
) -> None:
    path = tmp_path / "master_status.json"
    lines = write_report(path, actions)
    assert len(artifacts.read(path, "master_status")["actions"]) == actions  # one valid document
    with kept_index.OldReport(path, 1, actions) as old:
        assert old.workflow(0).startswith(b'{"error"')
        batches = list(old.action_batches(size))
    assert [line for batch in batches for line in batch] == lines
    assert len(batches) > 2 or actions < 7 or size > 150  # a small size reads a few lines at a time
    with kept_index.OldReport(path, 1, actions) as old:
        old.workflow(0)
        blocks = list(old.action_blocks(size))
    assert b",\n".join(block for block, _ in blocks) == b",\n".join(lines)  # the file's text, as it holds it
    assert [count for _, count in blocks] == [len(batch) for batch in batches]


def write_workflows(path: Path, workflows: int, actions: int) -> tuple[list[bytes], list[bytes]]:
    """Write a master_status.json of ``workflows`` workflows and ``actions`` actions; return both lists' lines."""
    kept = [status_file.part({**WORKFLOW, "workflow": f"w{n}.json"}, "workflow", "test") for n in range(workflows)]
    lines = [status_file.part({**ACTION, "id": f"fix_workflow:{n}"}, "action", "test") for n in range(actions)]
    with status_file.Writer(path) as writer:
        writer.workflow_lines(kept)
        writer.actions(lines)
        writer.finish(HEAD)
    return kept, lines


@pytest.mark.parametrize("workflows", [1, 2, 9])
@pytest.mark.parametrize("size", [1, 150, 1 << 20])
def test_the_last_reports_workflow_lines_are_read_at_once_then_its_actions(
    tmp_path: Path, workflows: int, size: int
) -> None:
    path = tmp_path / "master_status.json"
    kept, lines = write_workflows(path, workflows, 5)
    with kept_index.OldReport(path, workflows, 5) as old:
        assert old.workflow_lines(size) == kept
        blocks = list(old.action_blocks())
    assert b",\n".join(block for block, _ in blocks) == b",\n".join(lines)


@pytest.mark.parametrize("told", [1, 3, 5])
def test_a_last_report_with_other_workflows_than_the_index_says_is_refused(tmp_path: Path, told: int) -> None:
    path = tmp_path / "master_status.json"
    write_workflows(path, 4, 2)
    with kept_index.OldReport(path, told, 2) as old, pytest.raises(kept_index.NotIncremental):
        old.workflow_lines(150)
        list(old.action_blocks())


@pytest.mark.parametrize("told", [6, 8])
def test_a_last_report_with_other_actions_than_the_index_says_is_refused(tmp_path: Path, told: int) -> None:
    path = tmp_path / "master_status.json"
    write_report(path, 7)
    with kept_index.OldReport(path, 1, told) as old, pytest.raises(kept_index.NotIncremental):
        list(old.action_batches(150))


def test_a_torn_action_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master_status.json"
    lines = write_report(path, 7)
    text = path.read_bytes()
    assert lines[3] + b",\n" in text
    path.write_bytes(text.replace(lines[3] + b",\n", lines[3][:-5] + b"\n"))  # its comma gone
    with kept_index.OldReport(path, 1, 7) as old, pytest.raises(kept_index.NotIncremental):
        list(old.action_batches(150))


def test_file_names_hold_the_name_of_every_file_action_asked_for_whatever_its_folder() -> None:
    ids = ["search:vae/sub/fern.safetensors", "download:/bare.ckpt", "install_pack:https://github.com/a/b"]
    ids.append("download:odd/folder/x.safetensors")  # a folder type with a slash in it
    names = kept_index.file_names(ids)
    for status, folder, name in [
        ("NOT_SEARCHED", "vae", "sub/fern.safetensors"),
        ("FOUND", None, "bare.ckpt"),
        ("FOUND", "odd/folder", "x.safetensors"),
    ]:
        assert status_report.model_action_id(status, folder, name) in ids and name in names
    assert "fern.safetensors" in names and "other.safetensors" not in names


def test_a_kept_contribution_stands_unless_an_answer_it_depends_on_changed() -> None:
    # name, path, readiness, resolved, last resolved, error, files, seeded, nodes, blockers, newly, missed
    kept = [
        "a.json",
        "/w/a.json",
        "needs_review",
        False,
        None,
        None,
        [["loras", "Sub/X.safetensors", "FOUND", "", None, answers.lookup("Sub/X.safetensors")]],
    ]
    kept += [{}, [], [], False, []]
    changed = frozenset({answers.key("loras", "sub/x.safetensors")})  # the same file: keys ignore case
    assert not kept_index.stands(kept, changed) and not kept_index.stands(kept, changed, {"loras"})
    assert kept_index.stands(kept, frozenset({answers.key("vae", "sub/x.safetensors")}))
    assert kept_index.stands(kept, frozenset())
    assert not kept_index.stands([*kept[:10], True, []], frozenset())  # something newly missing
