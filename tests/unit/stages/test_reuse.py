"""Search and report leave their outputs as they are when their inputs did not change (``stage_inputs``), and
compute them again when an input changed, a cached answer expired, or an output is not what they wrote: real
stages on a small install in tmp_path, two cycles each."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, config, stage_inputs
from comfywatchman.search.base import SearchResult, Status
from comfywatchman.search.cache import SearchCache
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages import search
from comfywatchman.stages.context import StageContext
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
DECLARED = {"name": "declared.safetensors", "url": "https://huggingface.co/org/repo/resolve/main/declared.safetensors"}


def make_install(tree: ComfyTree) -> None:
    """One workflow needing an installed checkpoint, a missing LoRA and a declared (missing) VAE; another ready."""
    tree.model("checkpoints", "base.safetensors")
    vae = ui_node(3, "VAELoader", ["declared.safetensors"], properties={"models": [{**DECLARED, "directory": "vae"}]})
    tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "LoraLoader", ["missing_lora.safetensors", 1, 1]),
                vae,
            ]
        ),
    )
    tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])]))


def context(tree: ComfyTree, home: Path, cycle_id: str, when: datetime) -> StageContext:
    toml = home / "config.toml"
    toml.write_text('[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n', encoding="utf-8")
    cfg = config.load(config_file=toml, flags={"comfyui_root": tree.root, "home": home, "offline": True}, env={})
    return StageContext(cfg, cycle_id, lambda: when)


def run(
    ctx: StageContext, stages: tuple[str, ...] = ("cache", "intake", "scan", "search", "verify", "report")
) -> dict[str, Any]:
    """Run ``stages`` in order; return each one's outcome detail."""
    details = {}
    for stage in stages:
        outcome = STAGE_RUNNERS[stage](ctx)
        assert outcome.ok, (stage, outcome.errors)
        details[stage] = outcome.detail
    return details


def snapshot(*paths: Path) -> dict[Path, tuple[bytes, int]]:
    """Each file's bytes and mtime_ns."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def search_files(home: Path) -> tuple[Path, Path]:
    return home / "state" / "search.json", home / "state" / "download_queue.json"


def report_files(home: Path) -> tuple[Path, Path, Path]:
    reports = home / "output" / "reports" / "status"
    return reports / "master_status.json", reports / "master_status.md", home / "state" / "report_history.json"


def test_a_warm_cycle_leaves_search_and_report_untouched_but_the_page_says_this_cycle(
    comfy_tree: ComfyTree, home: Path
) -> None:
    make_install(comfy_tree)
    first = run(context(comfy_tree, home, "c1", T0))
    before = snapshot(*search_files(home), *report_files(home))
    page_before = report_files(home)[1].read_text(encoding="utf-8")

    second = run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)))

    assert snapshot(*search_files(home), *report_files(home)[::2]) == {
        p: v for p, v in before.items() if p != report_files(home)[1]
    }
    assert second["search"] == first["search"] and second["report"] == first["report"]
    page = report_files(home)[1].read_text(encoding="utf-8")
    assert page != page_before
    assert page.splitlines()[0] == "# ComfyUI readiness — 2026-05-01T14:00:00+00:00"
    assert "· cycle `c2`" in page and "· cycle `c1`" not in page
    # It says the findings (and master_status.json) are those of the cycle that computed them.
    assert "Nothing the findings depend on changed since cycle `c1` (2026-05-01T12:00:00+00:00)" in page
    # The findings' part of the page is the one written in the first cycle, character for character, but for
    # the next cycle's time (when the files not searched yet will be), which moved on with the clock.
    findings = page_before.split("\n## ", 1)[1].rsplit("\n## This cycle", 1)[0]
    due_before = json.loads(report_files(home)[0].read_text(encoding="utf-8"))["search_now"]["next_cycle_at"]
    assert f"due about {due_before}" in findings
    due_now = (T0 + timedelta(hours=2) + timedelta(minutes=120)).isoformat(timespec="seconds")
    assert due_now != due_before
    assert findings.replace(due_before, due_now) in page
    recorded = stage_inputs.previous(home / "state", "report")
    assert recorded is not None and recorded["cycle_id"] == "c2" and recorded["extra"]["next_cycle_at"] == due_now


def test_a_changed_workflow_updates_search_and_report(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]),
                ui_node(2, "UpscaleModelLoader", ["new_up.pth"]),
            ]
        ),
    )
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)))

    searched = artifacts.read(search_files(home)[0], "search")
    assert searched["cycle_id"] == "c2"
    assert "new_up.pth" in {r["name"] for r in searched["results"]}
    report = artifacts.read(report_files(home)[0], "master_status")
    assert report["cycle_id"] == "c2"
    b = next(w for w in report["workflows"] if w["path"].endswith("b.json"))
    assert [m["name"] for m in b["missing_models"]] == ["new_up.pth"]
    assert "new_up.pth" in report_files(home)[1].read_text(encoding="utf-8")


def test_an_expired_answer_or_a_changed_output_makes_the_search_run_again(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    state = home / "state"
    inputs_path = stage_inputs.path_of(state, "search")
    recorded = json.loads(inputs_path.read_text(encoding="utf-8"))
    assert recorded["valid_until"] is None  # offline answers do not expire
    # As an online cycle records it: the earliest expiry of a cached answer, now passed.
    recorded["valid_until"] = (T0 + timedelta(hours=1)).isoformat()
    inputs_path.write_text(json.dumps(recorded), encoding="utf-8")
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=2)), ("search",))
    assert artifacts.read(search_files(home)[0], "search")["cycle_id"] == "c2"

    run(context(comfy_tree, home, "c3", T0 + timedelta(hours=3)), ("search",))
    assert artifacts.read(search_files(home)[0], "search")["cycle_id"] == "c2"  # nothing expired, nothing changed

    queue = search_files(home)[1]
    queue.write_text(queue.read_text(encoding="utf-8").replace('"tasks"', '"tasks" '), encoding="utf-8")
    run(context(comfy_tree, home, "c4", T0 + timedelta(hours=4)), ("search",))
    assert artifacts.read(search_files(home)[0], "search")["cycle_id"] == "c4"


def test_an_edited_page_or_a_lost_inputs_file_rebuilds_the_report(comfy_tree: ComfyTree, home: Path) -> None:
    make_install(comfy_tree)
    run(context(comfy_tree, home, "c1", T0))
    status, page, _ = report_files(home)
    page.write_text("edited by hand\n", encoding="utf-8")
    run(context(comfy_tree, home, "c2", T0 + timedelta(hours=1)))
    assert artifacts.read(status, "master_status")["cycle_id"] == "c2"
    assert page.read_text(encoding="utf-8").startswith("# ComfyUI readiness")

    stage_inputs.path_of(home / "state", "report").unlink()
    run(context(comfy_tree, home, "c3", T0 + timedelta(hours=2)))
    assert artifacts.read(status, "master_status")["cycle_id"] == "c3"


def result(status: Status) -> SearchResult:
    return SearchResult("x.safetensors", "loras", status, "civitai")


def test_valid_until_is_the_earliest_expiry_online_and_never_offline(tmp_path: Path) -> None:
    cache = SearchCache(tmp_path / "search_cache.json", ttl_hours=24, negative_ttl_hours=2)
    cache.entries = {
        "a": {"expires_at": (T0 + timedelta(hours=24)).isoformat()},
        "b": {"expires_at": (T0 + timedelta(hours=2)).isoformat()},
    }
    found = [result(Status.FOUND)]
    assert search.valid_until(found, cache, offline=False, now=T0) == T0 + timedelta(hours=2)
    assert search.valid_until(found, cache, offline=True, now=T0) is None
    # A file that waits for the budget, or a failed backend: the next cycle asks again.
    assert search.valid_until([*found, result(Status.NOT_SEARCHED)], cache, offline=False, now=T0) == T0
    assert search.valid_until([result(Status.ERROR)], cache, offline=False, now=T0) == T0
    assert search.valid_until(found, SearchCache(tmp_path / "none.json", 24, 2), offline=False, now=T0) is None
