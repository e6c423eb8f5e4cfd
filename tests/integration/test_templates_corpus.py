"""The official ComfyUI workflow templates (package ``comfyui-workflow-templates-json``) as the yardstick:
real workflows nobody here wrote, scanned through the real cache, intake and scan stages."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, config
from comfywatchman.comfy import manager_map
from comfywatchman.comfy.inventory import NodeIndex, core_node_types
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages.context import StageContext
from comfywatchman.workflow import extract
from comfywatchman.workflow.graph import subgraph_definitions

templates_json = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATES = Path(templates_json.__file__).parent / "templates"
NOT_WORKFLOWS = ("index", "fuse_options")

pytestmark = pytest.mark.slow


def template_files() -> list[Path]:
    return sorted(p for p in TEMPLATES.glob("*.json") if not p.name.startswith(NOT_WORKFLOWS))


def all_nodes(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a template: top level and inside every subgraph definition."""
    yield from data["nodes"]
    for definition in subgraph_definitions(data).values():
        yield from definition.get("nodes") or []


def declarations(data: dict[str, Any]) -> set[tuple[str, str]]:
    found = {(m["name"], m["directory"]) for m in data.get("models") or []}
    for node in all_nodes(data):
        for model in (node.get("properties") or {}).get("models") or []:
            found.add((model["name"], model["directory"]))
    return found


def scan_install(tmp: Path, with_declared_files: bool) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Return (raw templates by name, scan.json workflows by name) for an install holding every template."""
    root = tmp / "ComfyUI"
    workflows = root / "user" / "default" / "workflows"
    workflows.mkdir(parents=True)
    (root / "models").mkdir()
    raw: dict[str, Any] = {}
    for path in template_files():
        raw[path.name] = json.loads(path.read_bytes())
        (workflows / path.name).symlink_to(path)
        if with_declared_files:
            for name, directory in declarations(raw[path.name]):
                target = root / "models" / directory / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    home = tmp / "home"
    home.mkdir()
    cfg = config.load(flags={"comfyui_root": root, "home": home, "offline": True}, env={})
    ctx = StageContext(cfg, "corpus")
    for stage in ("cache", "intake", "scan"):
        outcome = STAGE_RUNNERS[stage](ctx)
        assert outcome.ok, outcome.errors[:3]
    document = artifacts.read(ctx.state_dir / "scan.json", "scan")
    return raw, {w["workflow"]: w for w in document["workflows"]}


@pytest.fixture(scope="module")
def empty_install(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    return scan_install(tmp_path_factory.mktemp("empty"), with_declared_files=False)


def test_corpus_is_the_expected_size(empty_install: tuple[dict[str, Any], dict[str, Any]]) -> None:
    raw, scanned = empty_install
    assert len(raw) == len(scanned) >= 600
    entries = sum(
        len((n.get("properties") or {}).get("models") or []) for d in raw.values() for n in all_nodes(d)
    ) + sum(len(d.get("models") or []) for d in raw.values())
    assert entries >= 1200  # the issue counts 1,204 declarations (999 distinct per workflow)


def test_every_declared_model_is_missing_with_its_folder_on_an_empty_install(
    empty_install: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    raw, scanned = empty_install
    problems = []
    for name, data in raw.items():
        models = scanned[name]["models"]
        for declared, directory in declarations(data):
            hits = [
                m for m in models if m["folder"] == directory and any(d["name"] == declared for d in m["declarations"])
            ]
            if not hits or any(m["status"] != "missing" for m in hits):
                problems.append(f"{name}: {directory}/{declared}")
    assert problems == []


def test_every_loader_widget_value_is_a_requirement(empty_install: tuple[dict[str, Any], dict[str, Any]]) -> None:
    raw, scanned = empty_install
    defaults = config.load(flags={"offline": True}, env={}).section("scan")
    loaders = extract.loader_table(defaults["loaders"])
    placeholders = {v.casefold() for v in defaults["placeholder_values"]}
    problems = []
    for name, data in raw.items():
        required = {(m["folder"], m["name"]) for m in scanned[name]["models"]}
        promoted = {
            (o["node_type"], o["input"])
            for m in scanned[name]["models"]
            for o in m["origins"]
            if o["via"] == "promoted"
        }
        top_level = {id(n) for n in data["nodes"]}
        for node in all_nodes(data):
            values = node.get("widgets_values")
            for spec in loaders.get(node.get("type"), []):
                value = values[spec.index] if isinstance(values, list) and spec.index < len(values) else None
                if not isinstance(value, str) or value.casefold() in placeholders:
                    continue
                # Inside a subgraph an instance may override the value; the promoted one is then the requirement.
                overridden = id(node) not in top_level and (node["type"], spec.input) in promoted
                if (spec.folder, value) not in required and not overridden:
                    problems.append(f"{name}: {node['type']}.{spec.input} = {value}")
        assert ("vae", "pixel_space") not in required
    assert problems == []


def test_no_core_node_type_is_reported_missing(empty_install: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _raw, scanned = empty_install
    missing = {n["class_type"] for w in scanned.values() for n in w["nodes"] if n["state"] == "missing"}
    assert missing & core_node_types() == set()
    assert "PrimitiveNode" not in missing and not any(len(t) == 36 and t.count("-") == 4 for t in missing)


def test_no_declared_model_is_missing_when_every_declared_file_exists(tmp_path: Path) -> None:
    _raw, scanned = scan_install(tmp_path, with_declared_files=True)
    missing = [
        f"{name}: {m['folder']}/{m['name']}"
        for name, w in scanned.items()
        for m in w["models"]
        if m["declarations"] and m["status"] != "installed"
    ]
    assert missing == []


if __name__ == "__main__":  # pragma: no cover - corpus figures for the closing note
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        raw_docs, scanned_docs = scan_install(Path(tmp), with_declared_files=False)
        print(
            len(raw_docs),
            sum(len(declarations(d)) for d in raw_docs.values()),
            sum(len(w["models"]) for w in scanned_docs.values()),
            file=sys.stderr,
        )


def test_core_nodes_of_a_newer_comfyui_are_never_a_pack_to_install(
    empty_install: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    """Against a ComfyUI that has none of the corpus's core nodes, each node the corpus marks
    ``cnr_id: comfy-core`` asks to update ComfyUI, even where ComfyUI-Manager's map has packs claiming it."""
    raw, scanned = empty_install
    said_core = {
        n["type"]
        for data in raw.values()
        for n in all_nodes(data)
        if (n.get("properties") or {}).get("cnr_id") == "comfy-core"
    }
    assert len(said_core) > 300  # the corpus says so of most of its node types
    index = NodeIndex.from_cache({"packs": []}, manager_map.load(manager_map.find_map(Path("/nowhere"))), frozenset())
    claimed = 0
    for class_type in sorted(said_core):
        claimed += bool(index.node_map.candidates(class_type))
        state = index.state(class_type, {"cnr_id": "comfy-core"})
        if state.state != "frontend":
            assert [(p["name"], p["installed"]) for p in state.packs] == [("ComfyUI", True)], class_type
    if index.node_map.source is not None:
        assert claimed > 0  # without the workflow's word, these would have been packs to install
    # scan.json records what the workflow says of each node type's pack
    made = {n["class_type"]: n.get("made_with") for w in scanned.values() for n in w["nodes"]}
    for class_type, made_with in made.items():
        if class_type in said_core:
            assert made_with is not None and made_with["cnr_id"] == "comfy-core", class_type
