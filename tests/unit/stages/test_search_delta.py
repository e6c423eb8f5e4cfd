"""The offline search of a cycle where a few workflows changed, made from the last one (``search_delta``): what
it writes is what a search from scratch writes (kept == fresh) when workflows come, go or change, when the name
first met of a file changes, and when its declarations change; a torn memo or an online search means the full
search. Real stages on a small install in tmp_path."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from comfywatchman import config
from comfywatchman.stages import search, search_delta
from comfywatchman.stages.context import StageContext
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import DECLARED, T0, context, make_install, run
from tests.unit.stages.test_search import outputs, searched_from_scratch

STAGES = ("cache", "intake", "scan", "search")
KEPT = "missing files named by the workflows that changed grouped and answered again"


def again(comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, cycle: int) -> None:
    """Run the stages up to the search as cycle ``cycle``; assert the search was made from the last one and
    gives what a search from scratch gives."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages.search"):
        run(context(comfy_tree, home, f"c{cycle}", T0 + timedelta(hours=cycle)), STAGES)
    assert KEPT in caplog.text
    made = outputs(home)
    assert_memo_finds_the_found_lines(home)
    assert searched_from_scratch(comfy_tree, home, f"c{cycle}-scratch") == made
    assert_memo_finds_the_found_lines(home)  # the memo of a search from scratch too


def assert_memo_finds_the_found_lines(home: Path) -> None:
    """The memo in ``home`` gives the indexes of search.json's FOUND results (search.json is not searched)."""
    memo = search_delta.Memo.load(home / "state" / "search_delta.bin")
    assert memo is not None
    results, queue = outputs(home)
    assert memo.found == [i for i, r in enumerate(results["results"]) if r["status"] == "FOUND"]
    # The FOUND lines that made the queue's tasks, in its order.
    assert [results["results"][i]["name"] for i in memo.tasks] == [t["name"] for t in queue["tasks"]]


def test_workflows_that_come_go_and_change_give_what_a_full_search_gives(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    # A new workflow, in the middle of scan.json's order, that misses the LoRA too (its workflows grow) and a file
    # of its own, named with another case than the LoRA's (the same file: the name first met stays a.json's).
    comfy_tree.workflow(
        "aa.json",
        ui_workflow(
            [ui_node(1, "LoraLoader", ["MISSING_LORA.safetensors", 1, 1]), ui_node(2, "UpscaleModelLoader", ["up.pth"])]
        ),
    )
    again(comfy_tree, home, caplog, 2)
    # The workflow first met naming the LoRA changes: the name of the file becomes the other spelling.
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])]))
    again(comfy_tree, home, caplog, 3)
    assert next(r for r in outputs(home)[0]["results"] if r["type"] == "loras")["name"] == "MISSING_LORA.safetensors"
    # A workflow goes: its files with it.
    (comfy_tree.workflows / "aa.json").unlink()
    again(comfy_tree, home, caplog, 4)
    assert outputs(home)[0]["results"] == []


def test_a_changed_declaration_is_answered_again_from_the_last_search(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    moved = {**DECLARED, "url": "https://example.com/files/declared.safetensors", "directory": "vae"}
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(3, "VAELoader", ["declared.safetensors"], properties={"models": [moved]}),
            ]
        ),
    )
    again(comfy_tree, home, caplog, 2)
    vae = next(r for r in outputs(home)[0]["results"] if r["name"] == "declared.safetensors")
    assert vae["status"] == "FOUND" and len(vae["workflows"]) == 2  # a.json's declaration, first met, proves it
    assert outputs(home)[1]["tasks"][0]["blocks_workflows"] == 2


def test_a_torn_memo_means_the_full_search(comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    memo = home / "state" / "search_delta.bin"
    memo.write_bytes(memo.read_bytes()[:40])
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["up.pth"])]))
    with caplog.at_level(logging.INFO):
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), STAGES)
    assert "not a search memo" in caplog.text and KEPT not in caplog.text
    assert search_delta.Memo.load(memo) is not None  # written again whole
    assert searched_from_scratch(comfy_tree, home, "c3") == outputs(home)


def test_an_online_search_keeps_no_memo(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    assert (home / "state" / "search_delta.bin").exists()
    toml = home / "online.toml"
    toml.write_text(  # online, but nothing is sent: no backend, and no declared URL to check (no trusted host)
        '[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n'
        "[search]\nbackend_order = []\ntrusted_hosts = []\n",
        encoding="utf-8",
    )
    flags = {"comfyui_root": comfy_tree.root, "home": home, "offline": False}
    online = StageContext(config.load(config_file=toml, flags=flags, env={}), "c2", lambda: T0 + timedelta(hours=1))
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["up.pth"])]))
    run(online, STAGES)
    assert outputs(home)[0]["counts"]["NOT_SEARCHED"] == 2  # the LoRA and up.pth: no backend configured
    assert not (home / "state" / "search_delta.bin").exists()


def test_lines_made_again_go_first_last_and_between_the_kept_ones_as_a_full_search_puts_them(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)

    def needs(*nodes: tuple[str, str]) -> dict[str, object]:
        return ui_workflow([ui_node(i, kind, [name, 1, 1]) for i, (kind, name) in enumerate(nodes, start=1)])

    ckpt, lora, vae = "CheckpointLoaderSimple", "LoraLoader", "VAELoader"
    comfy_tree.workflow("c.json", needs((ckpt, "mmm.safetensors"), (lora, "mmm.safetensors"), (vae, "mmm.safetensors")))
    comfy_tree.workflow("e.json", needs((lora, "nnn.safetensors"), (vae, "nnn.safetensors")))
    run(context(comfy_tree, home, "c1", T0), STAGES)
    # A file that sorts before every other, one after, one kept with one more workflow; a file in the middle gone.
    comfy_tree.workflow("d.json", needs((ckpt, "aaa.safetensors"), (vae, "zzz.safetensors"), (lora, "mmm.safetensors")))
    comfy_tree.workflow("c.json", needs((ckpt, "mmm.safetensors"), (lora, "mmm.safetensors")))
    again(comfy_tree, home, caplog, 2)
    names = [(r["type"], r["name"]) for r in outputs(home)[0]["results"]]
    assert names[0] == ("checkpoints", "aaa.safetensors") and names[-1] == ("vae", "zzz.safetensors")
    assert ("vae", "mmm.safetensors") not in names and ("vae", "nnn.safetensors") in names
    # Everything made again at once: the same.
    (comfy_tree.workflows / "d.json").unlink()
    (comfy_tree.workflows / "e.json").unlink()
    again(comfy_tree, home, caplog, 3)


@pytest.mark.parametrize("found", [[5], [-1], [1, 1], ["1"], None, [0]])
def test_a_memo_whose_found_lines_are_not_its_lines_means_the_full_search(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, found: object
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    path = home / "state" / "search_delta.bin"
    memo = search_delta.Memo.load(path)
    assert memo is not None and len(memo.queries) == 2 and memo.found == [1]
    memo.found = found  # type: ignore[assignment]
    if found == [0]:  # FOUND lines, but not those that made the tasks
        memo.tasks = [1]
    path.write_bytes(memo.to_bytes())
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["up.pth"])]))
    with caplog.at_level(logging.INFO):
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), STAGES)
    assert "not a search memo" in caplog.text and KEPT not in caplog.text
    assert searched_from_scratch(comfy_tree, home, "c3") == outputs(home)


def test_a_memo_of_another_format_means_the_full_search(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    path = home / "state" / "search_delta.bin"
    data = path.read_bytes()
    path.write_bytes(b"search-delta-1" + data[data.index(b"\n") :])  # the format before the FOUND lines
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "UpscaleModelLoader", ["up.pth"])]))
    with caplog.at_level(logging.INFO):
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)), STAGES)
    assert KEPT not in caplog.text
    assert searched_from_scratch(comfy_tree, home, "c3") == outputs(home)


def test_the_last_queues_tasks_are_kept_only_for_the_same_folders_and_a_task_in_its_querys_folder(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), STAGES)
    state = home / "state"
    memo = search_delta.Memo.load(state / "search_delta.bin")
    assert memo is not None and memo.tasks == [1]
    model_cache = search.folder_paths(state / "model_cache.json")
    queue = state / "download_queue.json"
    kept = search_delta.kept_tasks(memo, queue, model_cache)
    assert list(kept) == [1] and kept[1]["name"] == "declared.safetensors" and kept[1]["folder"] == "vae"
    # The folders' paths changed (a target path would too): every task is made again.
    other = {"folders": {**model_cache["folders"], "vae": {"paths": ["/elsewhere/vae"]}}}
    assert search_delta.kept_tasks(memo, queue, other) == {}
    # A queue that does not hold one task per line recorded: none kept.
    memo.tasks = []
    assert search_delta.kept_tasks(memo, queue, model_cache) == {}
    # A kept line whose task is in another folder than its query's (its count of workflows comes from the other
    # queries) is read again from its line, not taken from the last queue.
    line = b'{"name":"x.safetensors","type":"vae","status":"FOUND","source":"declared","evidence":"declared",'
    line += b'"url":"https://example.com/x","sha256":null,"size":null,"reason":"","candidates":[],"details":{},'
    line += b'"attempts":[],"workflows":["a.json"]}'
    for folder, kept_task in (("vae", True), ("loras", False)):
        delta = search_delta.Delta(texts=[line], qids=[(folder, "x.safetensors")], origins=[0])
        task = {"name": "x.safetensors", "folder": "vae"}
        search_delta._found(delta, {}, [0], {0: task})
        assert (delta.found == [task]) is kept_task
        assert kept_task or delta.found[0][0].name == "x.safetensors"  # type: ignore[index, union-attr]
