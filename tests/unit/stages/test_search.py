"""The search stage when one workflow changed: the answers of the others are reused, and search.json and the
download queue are what a search from scratch gives; a changed declaration is answered again. Real stages on a
small install in tmp_path."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from comfywatchman import artifacts, stage_inputs
from comfywatchman.reporting import answers as report_answers
from comfywatchman.stages import search
from comfywatchman.stages.context import StageContext
from tests.fakes.civitai_server import FakeCivitai
from tests.fakes.hf_server import FakeHub
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.helpers.config import config_with
from tests.unit.reporting.test_answers import count_parses, parsed_again, same
from tests.unit.search.conftest import FAST_SEARCH
from tests.unit.stages.test_reuse import DECLARED, T0, context, make_install, run, search_files


def outputs(home: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """search.json and the download queue without what names the cycle."""
    found = []
    for path, schema in zip(search_files(home), ("search", "download_queue"), strict=True):
        document = artifacts.read(path, schema)
        found.append({k: v for k, v in document.items() if k not in ("cycle_id", "generated_at")})
    return found[0], found[1]


def searched_from_scratch(comfy_tree: ComfyTree, home: Path, cycle_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    stage_inputs.path_of(home / "state", "search").unlink()
    run(context(comfy_tree, home, cycle_id, T0 + timedelta(hours=5)), ("search",))
    return outputs(home)


@pytest.mark.parametrize("memo", [True, False])
def test_one_changed_workflow_reuses_the_other_answers(
    comfy_tree: ComfyTree, home: Path, caplog: pytest.LogCaptureFixture, memo: bool
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    if not memo:  # the full search, which reuses the answers of unchanged queries (without: ``search_delta``)
        (home / "state" / "search_delta.bin").unlink()
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "UpscaleModelLoader", ["new_up.pth"]),
                ui_node(3, "LoraLoader", ["missing_lora.safetensors", 1, 1]),
            ]
        ),
    )
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages.search"):
        run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)), ("cache", "intake", "scan", "search"))
    if memo:  # the LoRA (b.json names it now) and the new file, grouped again; the declared VAE kept
        assert "2 of 3 missing files named by the workflows that changed grouped and answered again" in caplog.text
    else:
        assert "2 of 3 answers reused from the last search" in caplog.text  # the LoRA and the declared VAE
    reused = outputs(home)
    lora = next(r for r in reused[0]["results"] if r["name"] == "missing_lora.safetensors")
    assert [Path(w).name for w in lora["workflows"]] == ["a.json", "b.json"]  # its workflows are this cycle's
    assert [t["name"] for t in reused[1]["tasks"]] == ["declared.safetensors"]

    assert searched_from_scratch(comfy_tree, home, "c3") == reused


def test_a_changed_declaration_is_answered_again(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    assert outputs(home)[0]["counts"]["FOUND"] == 1
    moved = {**DECLARED, "url": "https://example.com/files/declared.safetensors", "directory": "vae"}
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "LoraLoader", ["missing_lora.safetensors", 1, 1]),
                ui_node(3, "VAELoader", ["declared.safetensors"], properties={"models": [moved]}),
            ]
        ),
    )
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)), ("cache", "intake", "scan", "search"))
    document, queue = outputs(home)
    vae = next(r for r in document["results"] if r["name"] == "declared.safetensors")
    assert vae["status"] == "UNCERTAIN" and "not a trusted host" in vae["candidates"][0]["reason"]
    assert queue["tasks"] == []
    assert searched_from_scratch(comfy_tree, home, "c3") == (document, queue)


def test_the_answers_basis_changes_with_the_backend_order(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    basis = stage_inputs.previous(home / "state", "search")["extra"]["basis"]  # type: ignore[index]
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    assert search.answer_basis(ctx, ["civitai"]) != basis
    (home / "config.toml").write_text(
        '[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n', encoding="utf-8"
    )
    ctx = context(comfy_tree, home, "c2", T0 + timedelta(hours=2))
    order = list(ctx.config.section("search")["backend_order"])
    assert search.answer_basis(ctx, order) == basis


NAMES = [
    ("lora_a.safetensors", "loras"),
    ('odd "quoted" \\ name é.safetensors', "checkpoints"),
    ("SDXL/sub/x_fp16.gguf", None),
    ("ünïcode ✓.pt", "custom_folder"),
]


def full_answer_text(resolver: search.Resolver, query: search.ModelQuery) -> str:
    """The text of ``query``'s answer the long way: every backend asked offline, the answers combined."""
    answers = search.ask_backends(query, resolver.backends, offline=True)
    result = search.policy.combine(query.name, query.folder, answers)
    item = {**result.to_json(), "workflows": list(query.workflows)}
    return artifacts.part_text(item, "search", "result", "test")


def default_resolver(comfy_tree: ComfyTree, home: Path) -> search.Resolver:
    """Return a Resolver over the demo install with the configured backends, as the stage makes it."""
    make_install(comfy_tree)
    ctx = context(comfy_tree, home, "c1", T0)
    order = list(ctx.config.section("search")["backend_order"])
    context_ = search.SearchContext(config=ctx.config, now=T0)
    return search.Resolver(ctx, search.build_backends(order, context_), None, None, search.first_sources(context_))


def test_the_offline_blank_answer_is_the_answer_the_backends_give(comfy_tree: ComfyTree, home: Path) -> None:
    resolver = default_resolver(comfy_tree, home)
    queries = [
        search.ModelQuery(name, folder, (), (f"/w/{i}.json", "/w/z.json")) for i, (name, folder) in enumerate(NAMES)
    ]
    first = resolver.resolve(queries[0])
    assert resolver.blank is not None and not resolver.blank.made(first)  # the first one went the long way
    for query in queries:
        result = resolver.resolve(query)
        assert resolver.blank.made(result)  # and each one after it the short way, the first one again too
        assert (
            result.to_json()
            == search.policy.combine(
                query.name, query.folder, search.ask_backends(query, resolver.backends, offline=True)
            ).to_json()
        )
        assert resolver.blank.answer_text(query) == full_answer_text(resolver, query)


def test_no_blank_answer_online_or_with_a_local_backend(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    ctx = context(comfy_tree, home, "c1", T0)
    backends = search.build_backends(["qwen", "civitai"], search.SearchContext(config=ctx.config, now=T0))
    assert search.OfflineBlank.applies(ctx, backends)
    assert not search.OfflineBlank.applies(ctx, [])
    online = search.StageContext(dataclasses.replace(ctx.config, offline=False), "c1", lambda: T0)
    assert not search.OfflineBlank.applies(online, backends)


def test_an_offline_source_that_has_nothing_to_say_would_answer_not_searched(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    ctx = context(comfy_tree, home, "c1", T0)
    sources = search.first_sources(search.SearchContext(config=ctx.config, now=T0))
    listed = next(s for s in sources if s.name == "manager_model_list").model_list  # type: ignore[attr-defined]
    on_list = next(entries[0]["filename"] for entries in listed.by_name.values())
    declared = search.Declaration("declared.safetensors", DECLARED["url"], "vae")
    queries = [
        search.ModelQuery("declared.safetensors", "vae", (declared,)),
        search.ModelQuery("declared.safetensors", "vae", (search.Declaration("declared.safetensors"),)),
        search.ModelQuery("nowhere_at_all.safetensors", "loras"),
        search.ModelQuery(f"sub/{on_list.upper()}", None),
    ]
    for source in sources:
        for query in queries:
            if source.nothing_to_say(query):
                assert source.search(query).status is search.Status.NOT_SEARCHED, (source.name, query)
    said = {(s.name, q.name, bool(q.declarations)) for s in sources for q in queries if not s.nothing_to_say(q)}
    assert ("declared", "declared.safetensors", True) in said
    assert ("manager_model_list", f"sub/{on_list.upper()}", False) in said


def test_the_folder_paths_kept_are_those_read_while_model_cache_json_is_unchanged(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0), ("cache", "intake", "scan", "search"))
    path = home / "state" / "model_cache.json"
    recorded = stage_inputs.previous(home / "state", "search")
    assert recorded is not None and recorded["extra"]["folders"]["stat"] == stage_inputs.stat_key(path)
    kept, _ = search.kept_folder_paths(path, recorded)
    assert kept == search.folder_paths(path)  # kept == fresh
    document = artifacts.read(path, "model_cache")
    first = next(iter(document["folders"]))
    document["folders"][first]["paths"] = ["/elsewhere/" + first]
    artifacts.write(path, document, "model_cache")
    again, record = search.kept_folder_paths(path, recorded)
    assert again["folders"][first]["paths"] == ["/elsewhere/" + first]  # changed: read again
    assert record["stat"] == stage_inputs.stat_key(path)


@pytest.mark.parametrize("base", ["/m/loras", "C:\\models\\loras", "/", "", "relative/dir/", "/a//b/./c/", "./x"])
def test_a_target_path_is_what_a_posix_path_join_gives(base: str) -> None:
    names = ["x.safetensors", "sub/x.pt", "sub//x.pt", "./x.pt", "x/./y.pt", "sub/x.pt/", " sp .pt", "ü/ñ.gguf"]
    for name in [*names, "...pt", "x..y.pt", ".hidden.pt", "a\\b.pt"]:
        result = search.SearchResult(name, "f", search.Status.FOUND, "x")
        joined = str(PurePosixPath(base.replace("\\", "/")) / search.normalise(name))
        expected = None if search.invalid_filename_reason(name) else joined  # "sub/x.pt/": no file name
        assert search.target_path(result, {"folders": {"f": {"paths": [base]}}}) == expected, name


def taken_as_handed(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> report_answers.Answers:
    """Return the report's answers of the search.json the search just wrote, checking that the search handed
    them over: the report parses none of its lines, and they are what parsing every line gives."""
    state = home / "state"
    parsed = count_parses(monkeypatch)
    handed = report_answers.load(state / "search.json", state / report_answers.KEPT)
    assert parsed == []
    by_parsing, _ = parsed_again(state / "search.json", tmp_path)
    assert parsed  # the copy's lines were parsed
    same(handed, by_parsing)
    kept = report_answers._read_kept(state / report_answers.KEPT)
    assert kept is not None
    assert vars(kept) == vars(report_answers._read_kept(tmp_path / "alone" / report_answers.KEPT))
    return handed


def reported_alike(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage_context: Callable[[Path], StageContext]
) -> None:
    """Check that the report stage takes the answers the search handed over (it parses no line of search.json)
    and says what a report that parsed them says (the same home without them); ``stage_context``: the
    context of the cycle in a home."""
    parsing = tmp_path / "parsing"
    shutil.copytree(home, parsing)
    (parsing / "state" / report_answers.KEPT).unlink()
    parsed = count_parses(monkeypatch)
    run(stage_context(home), ("verify", "report"))
    assert parsed == []
    run(stage_context(parsing), ("verify", "report"))
    assert parsed
    for name in ("master_status.json", "master_status.md"):
        made = [(h / "output" / "reports" / "status" / name).read_text(encoding="utf-8") for h in (home, parsing)]
        assert made[0].replace(str(home), "HOME") == made[1].replace(str(parsing), "HOME")


def test_a_first_search_hands_the_report_its_answers_and_leaves_the_reports_own_alone(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_install(comfy_tree)
    kept = home / "state" / report_answers.KEPT
    run(context(comfy_tree, home, "c1", T0), ("cache", "intake", "scan", "search"))
    handed = taken_as_handed(home, tmp_path, monkeypatch)
    assert {a["status"] for a in handed.results.values()} == {"FOUND", "NOT_SEARCHED"}
    reported_alike(home, tmp_path, monkeypatch, lambda where: context(comfy_tree, where, "c1", T0))
    # A later full search (from scratch) finds the report's kept answers there: it does not replace them (the
    # report tells from them what changed), whatever it answers.
    kept.write_bytes(kept.read_bytes()[:-10])
    before = kept.read_bytes(), kept.stat().st_mtime_ns
    searched_from_scratch(comfy_tree, home, "c2")
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == before


def test_an_online_first_search_hands_over_every_kind_of_answer(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "LoraLoader", ["add_detail.safetensors", 1, 1]),  # FOUND
                ui_node(2, "CheckpointLoaderSimple", ["juggernaut_xl_v9_rundiffusion.safetensors"]),  # UNCERTAIN
                ui_node(3, "UNETLoader", ["flux1-dev.safetensors", "default"]),  # NEEDS_ACCESS (gated)
                ui_node(4, "LoraLoader", ["old_style.safetensors", 1, 1]),  # NOT_FOUND
                ui_node(5, "LoraLoader", ["common_name.safetensors", 1, 1]),  # UNCERTAIN
            ]
        ),
    )
    with FakeCivitai() as civitai, FakeHub() as hub:
        overrides = {
            "search": {**FAST_SEARCH, "backend_order": ["civitai", "huggingface"]},
            "civitai": {"base_url": civitai.url},
            "huggingface": {"endpoint": hub.url, "authors": ["Comfy-Org", "city96", "black-forest-labs"]},
            "intake": {"sources": {"comfyui": {"paths": ["{comfyui_root}/user/*/workflows"]}}},
        }
        secrets = {"HF_TOKEN": "hf_SECRET_TOKEN_456"}

        def online(where: Path) -> StageContext:
            config = config_with(where, overrides, secrets=secrets, comfyui_root=comfy_tree.root, offline=False)
            return StageContext(config, "c1", lambda: T0)

        run(online(home), ("cache", "intake", "scan", "search"))
        reported_alike(home, tmp_path / "report", monkeypatch, online)
    handed = taken_as_handed(home, tmp_path, monkeypatch)
    statuses = sorted(a["status"] for a in handed.results.values())
    assert statuses == ["FOUND", "NEEDS_ACCESS", "NOT_FOUND", "UNCERTAIN", "UNCERTAIN"]
    assert handed.uncertain == 2
    assert any(a["candidates"] for a in handed.results.values())
    assert handed.gated == {("diffusion_models", "flux1-dev.safetensors")}
    assert b"hf_SECRET" not in (home / "state" / report_answers.KEPT).read_bytes()


def test_the_blank_text_is_the_long_way_text_for_any_name(comfy_tree: ComfyTree, home: Path) -> None:
    # Names the cut text must carry as the encoder would: the stand-ins it cuts at, quotes, a lone surrogate
    # (which orjson refuses: encoded the long way), control characters; and a blank whose own text holds a
    # stand-in, which is not cut at all.
    resolver = default_resolver(comfy_tree, home)
    resolver.resolve(search.ModelQuery("lora_a.safetensors", "loras"))
    blank = resolver.blank
    assert blank is not None
    odd = ["\x00name\x00.safetensors", 'a"b\\c\n\t.pt', "lone \ud800 surrogate.pt", "x\x00type\x00", "plain.pt", "ü.pt"]
    workflow_lists: list[tuple[str, ...]] = [(), ("/w/a.json",), ('/w/"q".json', "/w/b.json"), ("C:\\w\\c.json",)]
    for name in odd:
        for folder in (None, "\x00workflows\x00", "loras", 'lo"ras'):
            for workflows in [(name, "/w/a.json"), *workflow_lists]:
                query = search.ModelQuery(name, folder, (), workflows)
                long_way = {**blank.rest, "name": name, "type": folder, "workflows": list(workflows)}
                assert blank.answer_text(query) == artifacts.dumps(long_way, indent=None)[:-1]
    assert blank.pieces and len(blank.pieces) == 4
    uncut = search.OfflineBlank(blank.reason, blank.attempts, {**blank.rest, "reason": "\x00name\x00"})
    query = search.ModelQuery("lora_b.safetensors", "loras", (), ("/w/b.json",))
    long_way = {**uncut.rest, "name": query.name, "type": query.folder, "workflows": list(query.workflows)}
    assert uncut.answer_text(query) == artifacts.dumps(long_way, indent=None)[:-1] and uncut.pieces == ()


def test_missing_files_are_grouped_in_the_order_of_folder_and_key_first_met_first() -> None:
    # No folder sorts as "~" (with a folder called "~"), and files of the same order keep the order they were
    # first met in; a query is what the class makes.
    parts = [
        [
            "/w/1.json",
            [["~", "B.pt", True, [], "b.pt"], [None, "b.pt", True, [], "b.pt"], ["loras", "z.pt", True, [], "z.pt"]],
        ],
        ["/w/2.json", [["loras", "a.pt", True, [["a.pt", "https://x/a.pt", None, None, None]], "a.pt"]]],
        [
            "/w/3.json",
            [[None, "b.pt", True, [], "b.pt"], ["~", "b.pt", False, [], "b.pt"], ["loras", "Z.pt", True, [], "z.pt"]],
        ],
    ]
    queries = search.group_missing(parts, count_inactive=False)
    assert [(q.folder, q.name, q.workflows) for q in queries] == [
        ("loras", "a.pt", ("/w/2.json",)),
        ("loras", "z.pt", ("/w/1.json", "/w/3.json")),
        ("~", "B.pt", ("/w/1.json",)),
        (None, "b.pt", ("/w/1.json", "/w/3.json")),
    ]
    assert queries[0] == search.ModelQuery(
        "a.pt", "loras", (search.Declaration("a.pt", "https://x/a.pt"),), ("/w/2.json",)
    )
    assert hash(queries[1]) == hash(search.ModelQuery("z.pt", "loras", (), ("/w/1.json", "/w/3.json")))
    assert queries[1]._asdict() == search.ModelQuery("z.pt", "loras", (), ("/w/1.json", "/w/3.json"))._asdict()
    with pytest.raises(AttributeError):
        queries[0].name = "b.pt"  # type: ignore[misc]
