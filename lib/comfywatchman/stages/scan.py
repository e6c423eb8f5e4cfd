"""Scan: read every workflow, list what it needs, and compare that with the install.

Reads ``intake.json`` and both caches, writes ``state/scan.json``. A workflow whose content hash (and the
scan settings) are unchanged since the last scan is not parsed again: its requirements are taken from the
previous ``scan.json`` and only compared with the install anew.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from comfywatchman import artifacts
from comfywatchman.comfy import manager_map
from comfywatchman.comfy.inventory import ModelIndex, NodeIndex
from comfywatchman.errors import ArtifactError
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.workflow import extract, names
from comfywatchman.workflow.load import WorkflowError, load

logger = logging.getLogger(__name__)

ARTIFACT = "scan.json"


def settings_hash(scan_config: dict[str, Any]) -> str:
    """Return a hash of what changes extraction: the extractor version and the [scan] settings."""
    return artifacts.content_hash({"extractor": extract.EXTRACTOR_VERSION, "scan": scan_config})


def _previous_requirements(path: Path, wanted_hash: str) -> dict[str, tuple[extract.Requirements, str | None]]:
    """Return sha256 -> (requirements, format) from the last scan when it was made with the same settings."""
    try:
        previous = artifacts.read_optional(path, "scan")
    except ArtifactError as exc:
        logger.warning("%s; every workflow is parsed again", exc)
        return {}
    if previous is None or previous["settings_hash"] != wanted_hash:
        return {}
    kept: dict[str, tuple[extract.Requirements, str | None]] = {}
    for entry in previous["workflows"]:
        if entry["error"] is None:
            kept[entry["sha256"]] = (_requirements_from_entry(entry), entry["format"])
    return kept


def _requirements_from_entry(entry: dict[str, Any]) -> extract.Requirements:
    models = [
        extract.ModelRef(
            name=m["name"],
            folder=m["folder"],
            origins=[extract.Origin(**o) for o in m["origins"]],
            declarations=m["declarations"],
        )
        for m in entry["models"]
    ]
    nodes = [extract.NodeRef(n["class_type"], n["node_ids"], n["modes"]) for n in entry["nodes"]]
    return extract.Requirements(models, nodes)


def evaluate(
    requirements: extract.Requirements, models: ModelIndex, nodes: NodeIndex
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the workflow's model and node entries, each annotated with whether the install has it."""
    model_entries = []
    for ref in requirements.models:
        reason = names.invalid_reason(ref.name)
        entry = {**ref.to_json(), "active": ref.active, "invalid_reason": reason}
        if reason is not None:
            entry.update(status="invalid", installed_as=None, note="", looked_in=[])
        else:
            match = models.find(ref.name, ref.folder)
            entry.update(
                status="installed" if match.installed else "missing",
                installed_as=match.installed_as,
                note=match.note,
                looked_in=match.looked_in,
            )
        model_entries.append(entry)
    node_entries = []
    for ref in requirements.nodes:
        state = nodes.state(ref.class_type)
        node_entries.append({**ref.to_json(), "active": ref.active, "state": state.state, "packs": state.packs})
    return model_entries, node_entries


def run(ctx: StageContext) -> StageOutcome:
    """Scan every workflow listed in ``intake.json``; write ``scan.json``; return the outcome with counts."""
    outcome = StageOutcome("scan")
    state = ctx.state_dir
    intake = artifacts.read(state / "intake.json", "intake")
    model_cache = artifacts.read(state / "model_cache.json", "model_cache")
    nodes_cache = artifacts.read(state / "custom_nodes_cache.json", "custom_nodes_cache")
    scan_config = ctx.config.section("scan")
    wanted_hash = settings_hash(scan_config)
    kept = _previous_requirements(state / ARTIFACT, wanted_hash)

    loaders = extract.loader_table(scan_config["loaders"])
    placeholders = frozenset(v.strip().casefold() for v in scan_config["placeholder_values"])
    model_index = ModelIndex.from_cache(model_cache)
    node_map = manager_map.load(manager_map.find_map(ctx.config.comfyui_root))
    node_index = NodeIndex.from_cache(nodes_cache, node_map)

    results = []
    parsed = reused = 0
    for item in intake["workflows"]:
        base = {key: item[key] for key in ("workflow", "path", "source", "sha256")}
        previous = kept.get(item["sha256"])
        if previous is not None:
            requirements, fmt = previous
            reused += 1
        else:
            try:
                workflow, _raw = load(Path(item["path"]))
            except WorkflowError as exc:
                outcome.fail(str(exc))
                results.append({**base, "format": None, "error": str(exc), "reused": False, "models": [], "nodes": []})
                continue
            requirements = extract.extract(workflow, loaders, placeholders)
            fmt = workflow.format
            parsed += 1
        model_entries, node_entries = evaluate(requirements, model_index, node_index)
        results.append(
            {
                **base,
                "format": fmt,
                "error": None,
                "reused": previous is not None,
                "models": model_entries,
                "nodes": node_entries,
            }
        )
    document = {
        "cycle_id": ctx.cycle_id,
        "generated_at": ctx.now().isoformat(timespec="seconds"),
        "comfyui_root": model_cache["comfyui_root"],
        "demo": model_cache["demo"],
        "settings_hash": wanted_hash,
        "node_map": node_map.source,
        "workflows": results,
    }
    artifacts.write(state / ARTIFACT, document, "scan")
    missing_models = {(m["folder"], names.lookup_key(m["name"])) for w in results for m in w["models"] if m["status"] != "installed"}
    missing_nodes = {n["class_type"] for w in results for n in w["nodes"] if n["state"] in ("missing", "disabled")}
    outcome.counts = {
        "workflows": len(results),
        "parsed": parsed,
        "reused": reused,
        "errors": len(outcome.errors),
        "missing_models": len(missing_models),
        "missing_nodes": len(missing_nodes),
    }
    outcome.detail = (
        f"{len(results)} workflows ({parsed} parsed, {reused} unchanged), {len(outcome.errors)} unreadable; "
        f"{len(missing_models)} models and {len(missing_nodes)} node types missing"
    )
    logger.info("scan: %s", outcome.detail)
    return outcome

