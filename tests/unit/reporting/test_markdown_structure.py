"""master_status.md parsed as CommonMark (markdown-it-py): headings, one unbroken ranked list, code spans and
fenced commands, no stray HTML; on the demo install, a generated bench install, and hostile names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bench.generate import generate_install
from comfywatchman import artifacts
from comfywatchman import config as config_module
from comfywatchman.reporting import markdown
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages.context import StageContext
from comfywatchman.workflow import names

PARSER = MarkdownIt("commonmark").enable("table")
TOOLS = ("comfy ", "hf ", "curl ", "cd ", "mv ", "python", "/", "comfywatchman ")


def _cycle(home: Path, root: Path | None, config_text: str = "") -> tuple[dict[str, Any], str]:
    """Run cache..report offline in this process; return master_status.json and .md."""
    config_file = home / "test.toml"
    config_file.write_text(config_text)
    flags = {"comfyui_root": root, "home": home, "offline": True}
    dirs = config_module.UserDirs(home / ".user" / "data", home / ".user" / "config")  # never the machine's
    config = config_module.load(config_file=config_file, flags=flags, env={}, dirs=dirs)
    ctx = StageContext(config, "test-cycle")
    for stage in ("cache", "intake", "scan", "search", "report"):
        STAGE_RUNNERS[stage](ctx)
    reports = home / "output" / "reports" / "status"
    document = artifacts.read(reports / "master_status.json", "master_status")
    return document, (reports / "master_status.md").read_text(encoding="utf-8")


def _section(tokens: list[Token], title_prefix: str) -> list[Token]:
    """Return the tokens from the h2 starting with ``title_prefix`` to the next h2."""
    start = None
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            title = tokens[index + 1].content
            if start is not None:
                return tokens[start:index]
            if title.startswith(title_prefix):
                start = index
    assert start is not None, f"no section {title_prefix!r}"
    return tokens[start:]


def check_structure(document: dict[str, Any], page: str) -> list[Token]:
    """Assert the page's CommonMark structure against the JSON it was rendered from; return the tokens."""
    tokens = PARSER.parse(page)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open" and t.tag == "h2"]
    assert headings[0] == "Do this first"
    assert [h.split(" (")[0] for h in headings[1:]] == [
        "Not ready",
        "Ready",
        "Recently acknowledged workflows",
        "This cycle",
    ]
    assert sum(1 for t in tokens if t.type == "heading_open" and t.tag == "h1") == 1
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")], "raw HTML leaked into the page"
    assert not [t for t in tokens if t.type == "code_block"], "an indented line became a code block"

    actions = _section(tokens, "Do this first")
    lists = [t for t in actions if t.type == "ordered_list_open"]
    if document["actions"]:
        # One ranked list from 1 to the end: a broken indent would start a second list (or a code block).
        assert len(lists) == 1 and lists[0].attrGet("start") in (None, 1)
        items = [t for t in actions if t.type == "list_item_open" and t.level == 1]
        assert len(items) == len(markdown.rank_items(document["actions"]))
        assert [t for t in actions if t.type == "table_open"]
    fences = [t for t in actions if t.type == "fence"]
    assert all(t.level > 0 for t in fences), "a command block fell out of its list item"
    for block in fences:
        for line in block.content.splitlines():
            assert line.startswith(TOOLS), line

    spans = {t.content for t in tokens if t.type == "inline" for t in t.children or [] if t.type == "code_inline"}
    for wf in document["workflows"]:
        assert wf["workflow"].replace("\n", "\\x0a") in spans, wf["workflow"]
    not_ready = _section(tokens, "Not ready")
    grouped = [t for t in not_ready if t.type == "heading_open" and t.tag == "h3"]
    waiting = sum(1 for w in document["workflows"] if w["readiness"] != "ready")
    assert headings[1] == f"Not ready ({waiting:,})"
    assert bool(grouped) == bool(waiting)
    return tokens


def test_demo_report_is_valid_commonmark_with_commands(tmp_path: Path) -> None:
    document, page = _cycle(tmp_path, None)
    check_structure(document, page)
    fences = "\n".join(t.content for t in PARSER.parse(page) if t.type == "fence")
    # The demo's pack is disabled with the suffix; its UltimateSDUpscale node names its registry id (cnr_id),
    # so comfy-cli installs it.
    assert "mv " in fences and "custom_nodes/ComfyUI-OldPack.disabled" in fences
    assert "node install comfyui_ultimatesdupscale" in fences
    assert "hf download Comfy-Org/flux1-schnell flux1-schnell.safetensors --local-dir" in fences
    # Offline: the searches wait for the next cycle, with its time, and the command that searches now.
    due = document["search_now"]["next_cycle_at"]
    assert (
        "This cycle ran offline (`--offline` or `[search] offline`): "
        f"the next cycle that runs online searches them, due about {due}." in page
    )
    assert f"To search now: `comfywatchman --run-cycle --home {tmp_path}" in page


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    base = tmp_path_factory.mktemp("bench")
    root = base / "ComfyUI"
    generate_install(root, 150, 1500, 0, processes=2)
    home = base / "home"
    home.mkdir()
    config = f'[intake.sources.comfyui]\npaths = ["{root}/user/*/workflows"]\ninclude = ["*.json", "*.png"]\n'
    return _cycle(home, root, config)


def test_bench_report_is_valid_commonmark_and_small(bench_report: tuple[dict[str, Any], str]) -> None:
    document, page = bench_report
    assert document["summary"]["workflows"] == 150
    check_structure(document, page)
    # Workflows are names in grouped lists, not sections; the ranked list shows FULL_ITEMS_PER_KIND items of a
    # kind one by one (with commands) and groups the rest: 41 KB here, 139 KB at 2,000 workflows.
    assert len(page.encode()) < 50_000, len(page.encode())
    assert "## Workflows" not in page and "### ✅" not in page


def test_bench_report_lists_every_pack_action_and_every_download(bench_report: tuple[dict[str, Any], str]) -> None:
    document, page = bench_report
    for action in document["actions"]:
        if action["kind"] in ("install_pack", "enable_pack"):
            assert action["commands"], action["item"]
            assert action["commands"][0]["shell"] in page
        if action["kind"] == "download":
            # Shown on its own or inside its group's one hf download command.
            assert names.basename(action["item"]) in page
            assert action["target_path"] and action["target_path"].endswith(names.normalize(action["item"]))
    totals = document["action_totals"]
    assert totals["download"]["actions"] == sum(1 for a in document["actions"] if a["kind"] == "download")


HOSTILE = ["a*b*c.json", "under_score_.json", "tick`s.json", "pipe|name.json", "<b>bold</b>.json", "two\nlines.json"]


def test_names_with_markdown_characters_stay_literal() -> None:
    workflows = [
        {
            "workflow": name,
            "path": f"/w/{name}",
            "intake_source": "comfyui",
            "readiness": "ready" if index % 2 else "blocked",
            "missing_models": [],
            "missing_nodes": [],
            "inactive_missing": 0,
            "uncertain_count": 0,
            "newly_missing": [],
            "last_resolved_at": None,
            "error": None if index % 2 else f"/w/{name}: invalid JSON <oops> *x*",
        }
        for index, name in enumerate(HOSTILE)
    ]
    from comfywatchman.reporting import status_report

    ranked = [
        {"id": f"fix_workflow:{w['path']}", "kind": "fix_workflow", "item": w["workflow"], "folder": None}
        | {"url": None, "size": None, "detail": w["error"], "workflows": [w["workflow"]], "blocks": 1}
        for w in workflows
        if w["error"]
    ]
    summary = {
        "workflows": 6,
        "ready": 3,
        "resolvable": 0,
        "needs_review": 0,
        "blocked": 3,
        "error": 0,
        "missing_models": 0,
        "missing_nodes": 0,
        "uncertain": 0,
        "download_bytes": 0,
        "download_sizes_known": 0,
    }
    document = {
        "generated_at": "T",
        "cycle_id": "c",
        "comfyui_root": "/c`x",
        "demo": False,
        "offline": False,
        "summary": summary,
        "action_totals": status_report.action_totals(ranked),
        "actions": ranked,
        "workflows": workflows,
        "recent_intake": [],
        "cycle": {"stages": [], "errors": ["/w/x.json: bad | table <tag>"]},
    }
    tokens = check_structure(document, markdown.render(document))
    texts = [c.content for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "text"]
    assert any("invalid JSON <oops> *x*" in text for text in texts)  # escaped, shown as written
    assert json.dumps(texts)  # nothing unprintable slipped through
