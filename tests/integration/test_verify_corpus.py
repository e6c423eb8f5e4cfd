"""Drift and installed variants on the official templates (``comfyui-workflow-templates-json``): every
template that declares sha256 hashes, with files of the right and of a wrong content; and a "typical
install" holding one precision of each model the corpus names in several."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, config
from comfywatchman.comfy.variants import split_name
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages.context import StageContext
from tests.integration.test_templates_corpus import all_nodes, declarations, template_files

pytest.importorskip("comfyui_workflow_templates_json")
pytestmark = pytest.mark.slow


def declared_entries(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every declaration of a template (workflow level, nodes, subgraph nodes), as the objects themselves."""
    found = list(data.get("models") or [])
    for node in all_nodes(data):
        found += (node.get("properties") or {}).get("models") or []
    return found


def run_cycle(root: Path, home: Path) -> StageContext:
    home.mkdir()
    cfg = config.load(flags={"comfyui_root": root, "home": home, "offline": True}, env={})
    ctx = StageContext(cfg, "corpus")
    for stage in ("cache", "intake", "scan", "search", "verify", "report"):
        outcome = STAGE_RUNNERS[stage](ctx)
        assert outcome.ok, (stage, outcome.errors[:3])
    return ctx


def test_templates_with_declared_hashes_verify_and_a_wrong_file_drifts_in_each(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    workflows = root / "user" / "default" / "workflows"
    workflows.mkdir(parents=True)
    hashed: dict[tuple[str, str], str] = {}  # (directory, name) -> sha256 of the file written
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for path in template_files():
        data = json.loads(path.read_bytes())
        entries = [e for e in declared_entries(data) if e.get("hash") and e.get("directory")]
        if not entries:
            continue
        for decl in entries:
            key = (decl["directory"], decl["name"])
            if key not in hashed:
                content = f"{key} as published".encode()
                target = root / "models" / decl["directory"] / decl["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
                hashed[key] = hashlib.sha256(content).hexdigest()
            decl["hash"] = hashed[key]  # the right file: its declared hash is its real one
            users[key].add(path.name)
        (workflows / path.name).write_text(json.dumps(data), encoding="utf-8")
    assert len(users) >= 10  # the corpus holds several templates declaring a sha256 per file
    ctx = run_cycle(root, tmp_path / "home")
    found = artifacts.read(ctx.state_dir / "verify.json", "verify")
    assert found["drift"] == []
    assert found["progress"]["files_verified"] == len(hashed) and found["progress"]["files_pending"] == 0

    # One file replaced by other bytes (a re-upload): it drifts in every template declaring it, and only there.
    key = max(users, key=lambda k: (len(users[k]), k))
    (root / "models" / key[0] / key[1]).write_bytes(b"another upload under the same name")
    STAGE_RUNNERS["cache"](ctx)
    assert STAGE_RUNNERS["verify"](ctx).counts["hashed_files"] == 1
    assert STAGE_RUNNERS["report"](ctx).ok
    (drift,) = artifacts.read(ctx.state_dir / "verify.json", "verify")["drift"]
    assert (drift["folder"], drift["installed_as"]) == key and set(drift["workflows"]) == users[key]
    status = artifacts.read(ctx.config.reports_dir / "master_status.json", "master_status")
    drifted = {w["workflow"] for w in status["workflows"] if w.get("drift")}
    assert drifted == users[key]
    assert all(w["readiness"] in ("needs_review", "blocked") for w in status["workflows"] if w["workflow"] in drifted)


def test_a_typical_install_offers_its_other_precision_for_each_missing_sibling(tmp_path: Path) -> None:
    """One precision of each model the corpus names in several (the first name in sorted order) is installed;
    every other name of that model that a template misses gets it as a variant, never as installed."""
    root = tmp_path / "ComfyUI"
    workflows = root / "user" / "default" / "workflows"
    workflows.mkdir(parents=True)
    declared: set[tuple[str, str]] = set()
    for path in template_files():
        declared |= declarations(json.loads(path.read_bytes()))
        (workflows / path.name).symlink_to(path)
    groups: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, directory in declared:
        groups[(directory, split_name(name).key)].add(name)
    installed = {(directory, min(names)) for (directory, _), names in groups.items() if len(names) > 1}
    for directory, name in installed:
        (root / "models" / directory / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "models" / directory / name).write_bytes(b"x")
    ctx = run_cycle(root, tmp_path / "home")
    scan = artifacts.read(ctx.state_dir / "scan.json", "scan")
    missing = {(m["folder"], m["name"]) for w in scan["workflows"] for m in w["models"] if m["active"]}
    siblings = {(d, n) for (d, _), names in groups.items() if len(names) > 1 for n in names} - installed
    expected = {k for k in missing if k in siblings}
    alternatives = artifacts.read(ctx.state_dir / "verify.json", "verify")["alternatives"]
    offered = {(a["folder"], a["name"]): a for a in alternatives}
    assert expected and expected <= set(offered)
    for key in expected:
        (variant,) = offered[key]["variants"]
        assert (key[0], variant["installed_as"]) in installed
        assert key in missing  # a variant never makes the file installed
