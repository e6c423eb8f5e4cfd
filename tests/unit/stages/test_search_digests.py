"""The search's record of search.json's result lines (``search_digests``): what it says is what hashing search.json
says (kept == fresh) after a full search and searches made from the last one as workflows come, change and go; it
is trusted only for the very search.json it was written with (one written again behind its back, or a record torn,
edited or of another format, is not); and the report's answers are the same with it and without it, a record that
lies about another search.json never changing them. Real stages on a small install in tmp_path."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from comfywatchman.reporting import answers
from comfywatchman.stages import search_digests
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, make_install, run

STAGES = ("cache", "intake", "scan", "search")
MADE_AGAIN = "missing files named by the workflows that changed grouped and answered again"


def hashed(search_path: Path) -> list[str]:
    """Return the digest of each result line of search.json, hashed here (the fresh answer)."""
    raw = search_path.read_bytes().removesuffix(b"\n").split(b"\n")
    assert raw[-1].startswith(b"]")
    return [search_digests.line_digest(line.removesuffix(b",")) for line in raw[1:-1]]


def assert_record_is_fresh(state: Path) -> None:
    recorded = search_digests.load(state / "search.json")
    assert recorded is not None
    assert recorded == hashed(state / "search.json")


def cycle(comfy_tree: ComfyTree, home: Path, number: int, caplog: pytest.LogCaptureFixture) -> str:
    """Run the stages up to the search as cycle ``number``; return the search's log."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages.search"):
        run(context(comfy_tree, home, f"c{number}", T0 + timedelta(hours=number)), STAGES)
    return caplog.text


def lora(comfy_tree: ComfyTree, name: str, model: str) -> None:
    comfy_tree.workflow(name, ui_workflow([ui_node(1, "LoraLoader", [model, 1, 1])]))


def test_the_record_says_what_hashing_says_as_workflows_come_change_and_go(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    state = home / "state"
    cycle(comfy_tree, home, 1, caplog)
    assert_record_is_fresh(state)
    lora(comfy_tree, "c.json", "new.safetensors")  # added: the other lines copied from the last search.json
    assert MADE_AGAIN in cycle(comfy_tree, home, 2, caplog)
    assert_record_is_fresh(state)
    lora(comfy_tree, "c.json", "other.safetensors")  # changed
    assert MADE_AGAIN in cycle(comfy_tree, home, 3, caplog)
    assert_record_is_fresh(state)
    (comfy_tree.workflows / "c.json").unlink()  # gone
    assert MADE_AGAIN in cycle(comfy_tree, home, 4, caplog)
    assert_record_is_fresh(state)
    # A search made from the last one without a record of it hashes what it copies: still fresh.
    (state / search_digests.FILE).unlink()
    lora(comfy_tree, "d.json", "fourth.safetensors")
    assert MADE_AGAIN in cycle(comfy_tree, home, 5, caplog)
    assert_record_is_fresh(state)


def test_a_record_of_another_search_json_a_torn_or_foreign_one_is_not_trusted(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    state = home / "state"
    search, record = state / "search.json", state / search_digests.FILE
    cycle(comfy_tree, home, 1, caplog)
    old = record.read_bytes()
    # A crash between search.json and its record: the next search.json is there with the last record.
    lora(comfy_tree, "c.json", "new.safetensors")
    cycle(comfy_tree, home, 2, caplog)
    good = record.read_bytes()
    record.write_bytes(old)
    assert search_digests.load(search) is None
    # The same file copied elsewhere is another file.
    shutil.copy2(search, state / "copy.json")
    record.write_bytes(good)
    assert search_digests.load(state / "copy.json") is None
    assert search_digests.load(search) is not None
    # Torn, a byte of its body edited, of another format: not trusted.
    for broken in (good[:-20], good.replace(b'"digests":["', b'"digests":["0', 1)[:-2] + b'"]}', b"x" + good):
        record.write_bytes(broken)
        assert search_digests.load(search) is None
    # A body edited with its checksum made again, to hold a digest that is not one.
    record.write_bytes(good)
    tag, checksum, body = good.split(b"\n", 2)
    search_digests.save(search, [*search_digests.load(search)[:-1], "x"])  # type: ignore[index]
    assert search_digests.load(search) is None
    assert (tag, checksum, body) != tuple(record.read_bytes().split(b"\n", 2))


def test_the_report_answers_are_the_same_with_the_record_without_it_and_with_a_lying_foreign_one(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    lora(comfy_tree, "c.json", "new.safetensors")
    state = home / "state"
    search, record = state / "search.json", state / search_digests.FILE
    cycle(comfy_tree, home, 1, caplog)
    first_record = search_digests.load(search)
    assert first_record is not None
    answers.load(search, state / answers.KEPT)  # the report's kept answers, of this search.json
    kept = (state / answers.KEPT).read_bytes()
    lora(comfy_tree, "c.json", "other.safetensors")
    cycle(comfy_tree, home, 2, caplog)
    fresh = answers.from_results(answers.artifacts.read(search, "search")["results"], offline=True)

    def loaded() -> answers.Answers:
        (state / answers.KEPT).write_bytes(kept)
        return answers.load(search, state / answers.KEPT)

    def same(found: answers.Answers) -> None:
        assert (found.results, found.gated, found.uncertain) == (fresh.results, fresh.gated, fresh.uncertain)
        assert {k: found.digest(k) for k in found.results} == {k: fresh.digest(k) for k in fresh.results}

    count = len(hashed(search))
    hashes: list[bytes] = []
    real = search_digests.line_digest

    def counted(line: bytes) -> str:
        hashes.append(line)
        return real(line)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(search_digests, "line_digest", counted)
        with_record = loaded()
        # Only the line the kept answers lack is hashed: read alone, found by the lengths of the lines before
        # it, and checked against the record; every other line's digest is the record's.
        assert len(hashes) == 1 and b"other.safetensors" in hashes[0]
        hashes.clear()
        (state / answers.KEPT).write_bytes(kept)
        record.rename(record.with_suffix(".away"))
        without = loaded()
        assert len(hashes) == count + 1  # each line hashed (once), and the line read alone checked again
        record.with_suffix(".away").rename(record)
    same(with_record)
    good = record.read_bytes()
    same(without)
    assert with_record.changed == without.changed and without.changed
    # A record that says every line is as it was in the first search.json: trusted for the very file it would
    # change the answers (so the checks below can fail); written for the file before a touch, it is ignored.
    lying = (first_record + [first_record[-1]] * count)[:count]
    search_digests.save(search, lying)
    assert loaded().results != fresh.results
    search_digests.save(search, lying)
    search.touch()
    same(loaded())
    record.write_bytes(good)
