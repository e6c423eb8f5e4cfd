"""Scan: read every workflow, list what it needs, and compare that with the install.

Reads ``intake.json`` and both caches, writes ``state/scan.json``. Two levels of reuse keep repeated cycles
cheap:

- nothing changed (same workflows and hashes, same caches, same settings, same server answer): the inputs
  fingerprint in ``state/scan_inputs.json`` matches and ``scan.json`` is left as it is, like the caches;
- a workflow whose content hash is unchanged is not parsed again: its requirements are taken from the
  previous ``scan.json`` and only compared with the install anew.

When ``[comfyui] url`` names a ComfyUI server that answers ``/object_info``, its node types and combo lists
decide first; every verdict records whether the server or the files gave it (``checked_by``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, resources
from comfywatchman.comfy import manager_map, server
from comfywatchman.comfy.inventory import ModelIndex, NodeIndex
from comfywatchman.errors import ArtifactError
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.workflow import embeddings, extract, names
from comfywatchman.workflow.load import WorkflowError, load

logger = logging.getLogger(__name__)

ARTIFACT = "scan.json"
INPUTS = "scan_inputs.json"
# Requirements found by a loader widget; only these can be checked against a server's combo list.
_COMBO_VIAS = frozenset({"widget", "primitive", "promoted"})
# What a workflow's requirements are, as opposed to the verdicts on them.
_MODEL_KEYS = ("name", "folder", "origins", "declarations")
_NODE_KEYS = ("class_type", "node_ids", "modes")
# Below this many workflows to parse, worker processes cost more to start than they save.
MIN_PARALLEL = 64
MAX_WORKERS = 8

# Set in each worker process (and in this one for the serial path): the extraction settings.
_EXTRACT_SETTINGS: tuple[dict[str, list[extract.LoaderInput]], frozenset[str]] | None = None


def _init_extract(loaders: dict[str, list[extract.LoaderInput]], placeholders: frozenset[str]) -> None:
    global _EXTRACT_SETTINGS
    _EXTRACT_SETTINGS = (loaders, placeholders)
    # Parsed workflows hold no reference cycles; the cyclic collector would only rescan every object made.
    gc.disable()


def parse_one(path: str) -> dict[str, Any] | str:
    """Return the requirement data of the workflow at ``path`` (format, container, models, nodes), or the
    one-line error naming the file when it cannot be read as a workflow."""
    assert _EXTRACT_SETTINGS is not None
    try:
        workflow, _raw = load(Path(path))
    except WorkflowError as exc:
        return str(exc)
    loaders, placeholders = _EXTRACT_SETTINGS
    return {
        "format": workflow.format,
        "container": workflow.container,
        **extract.extract(workflow, loaders, placeholders).to_json(),
    }


def worker_count(configured: int, jobs: int) -> int:
    """Return how many worker processes to parse ``jobs`` workflows with (1: parse in this process)."""
    if jobs < MIN_PARALLEL:
        return 1
    if configured > 0:
        return configured
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def parse_all(paths: list[str], workers: int) -> Iterator[dict[str, Any] | str]:
    """Yield ``parse_one`` for each of ``paths``, in order, over ``workers`` processes when more than one."""
    if workers <= 1:
        yield from map(parse_one, paths)
        return
    assert _EXTRACT_SETTINGS is not None
    methods = multiprocessing.get_all_start_methods()
    # fork starts workers in milliseconds and shares the loaded code; elsewhere the default method.
    context = multiprocessing.get_context("fork") if "fork" in methods else None
    settings = _EXTRACT_SETTINGS
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_extract, initargs=settings) as pool:
        yield from pool.map(parse_one, paths, chunksize=max(1, min(32, len(paths) // (workers * 8) or 1)))


def settings_hash(scan_config: dict[str, Any]) -> str:
    """Return a hash of what changes extraction: the extractor version and the [scan] settings."""
    return artifacts.content_hash({"extractor": extract.EXTRACTOR_VERSION, "scan": scan_config})


def _file_digest(path: Path | None) -> str | None:
    """Return the sha256 of the file at ``path``, or None when there is none."""
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def inputs_fingerprint(
    state: Path,
    intake: Mapping[str, Any],
    wanted_hash: str,
    map_path: Path | None,
    truth: server.ServerTruth | None,
) -> str:
    """Return a hash of everything scan.json is computed from, bar the cycle id and the clock."""
    return artifacts.content_hash(
        {
            "settings": wanted_hash,
            "workflows": [[w["path"], w["workflow"], w["source"], w["sha256"]] for w in intake["workflows"]],
            "comfyui_root": intake["comfyui_root"],
            # The cache stage rewrites its files only when their content changes, so their bytes stand for it.
            "model_cache": _file_digest(state / "model_cache.json"),
            "nodes_cache": _file_digest(state / "custom_nodes_cache.json"),
            "node_map": _file_digest(map_path),
            "data": [_file_digest(resources.DATA_DIR / n) for n in ("core_nodes.txt", "frontend_nodes.json")],
            "server": truth.digest if truth is not None else None,
        }
    )


def _previous_requirements(path: Path, wanted_hash: str) -> dict[str, dict[str, Any]]:
    """Return sha256 -> requirement data (format, container, models, nodes) from the last scan when it was
    made with the same settings; empty when there is none or it is unusable."""
    try:
        previous = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable (%s); every workflow is parsed again", path, exc)
        return {}
    if not isinstance(previous, dict) or previous.get("settings_hash") != wanted_hash:
        return {}
    kept: dict[str, dict[str, Any]] = {}
    # This file was validated when it was written; reading it back is only guarded against a hand-edited or
    # foreign file: any shape problem means nothing is reused (validating 30 MB again would cost a second).
    try:
        for entry in previous["workflows"]:
            if entry["error"] is None:
                kept[entry["sha256"]] = {
                    "format": entry["format"],
                    "container": entry.get("container", "json"),
                    "models": [{k: m[k] for k in _MODEL_KEYS} for m in entry["models"]],
                    "nodes": [{k: n[k] for k in _NODE_KEYS} for n in entry["nodes"]],
                }
    except (KeyError, TypeError) as exc:
        logger.warning("%s: not shaped like a scan (%s); every workflow is parsed again", path, exc)
        return {}
    return kept


class Evaluator:
    """Compares requirements with the install, remembering each verdict (many workflows share files)."""

    def __init__(self, models: ModelIndex, nodes: NodeIndex, truth: server.ServerTruth | None) -> None:
        self.models = models
        self.nodes = nodes
        self.truth = truth
        self._model_memo: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._node_memo: dict[str, dict[str, Any]] = {}

    def model(self, ref: Mapping[str, Any]) -> dict[str, Any]:
        """Return the scan.json entry for one model requirement (``name, folder, origins, declarations``)."""
        origins = ref["origins"]
        active = not origins or any(o["mode"] == "active" for o in origins)
        prompt_only = bool(origins) and all(o["via"] == "prompt" for o in origins)
        combo = next(
            ((o["node_type"], o["input"]) for o in origins if o["via"] in _COMBO_VIAS and o["input"]), None
        )
        key = (ref["name"], ref["folder"], prompt_only, combo if self.truth is not None else None)
        verdict = self._model_memo.get(key)
        if verdict is None:
            verdict = self._model_memo[key] = self._model_verdict(ref["name"], ref["folder"], prompt_only, key[3])
        return {**ref, "active": active, **verdict}

    def _model_verdict(
        self, name: str, folder: str | None, prompt_only: bool, combo: tuple[str, str] | None
    ) -> dict[str, Any]:
        reason = names.invalid_reason(name)
        if reason is not None:
            return {
                "invalid_reason": reason, "status": "invalid", "installed_as": None, "note": "",
                "looked_in": [], "checked_by": "files",
            }
        if combo is not None and self.truth is not None:
            answer = self.truth.combo_match(combo[0], combo[1], name)
            if answer is not None:
                listed, as_listed = answer
                return {
                    "invalid_reason": None,
                    "status": "installed" if listed else "missing",
                    "installed_as": as_listed,
                    "note": "" if listed else f"not in the server's list for {combo[0]}.{combo[1]}",
                    "looked_in": [] if listed else self.models.looked_in(folder),
                    "checked_by": "server",
                }
        suffixes = embeddings.LOOKUP_SUFFIXES if prompt_only else ("",)
        match = self.models.find(name, folder, suffixes)
        return {
            "invalid_reason": None,
            "status": "installed" if match.installed else "missing",
            "installed_as": match.installed_as,
            "note": match.note,
            # Where it was looked for matters only when it was not found; an installed file needs no list.
            "looked_in": [] if match.installed else match.looked_in,
            "checked_by": match.checked_by,
        }

    def node(self, ref: Mapping[str, Any]) -> dict[str, Any]:
        """Return the scan.json entry for one node type use (``class_type, node_ids, modes``)."""
        verdict = self._node_memo.get(ref["class_type"])
        if verdict is None:
            state = self.nodes.state(ref["class_type"])
            verdict = self._node_memo[ref["class_type"]] = {
                "state": state.state, "packs": state.packs, "checked_by": state.checked_by,
            }
        modes = ref["modes"]
        return {**ref, "active": not modes or "active" in modes, **verdict}


def evaluate(
    requirements: extract.Requirements, models: ModelIndex, nodes: NodeIndex
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the workflow's model and node entries, each annotated with whether the install has it."""
    evaluator = Evaluator(models, nodes, nodes.server)
    data = requirements.to_json()
    return [evaluator.model(m) for m in data["models"]], [evaluator.node(n) for n in data["nodes"]]


def _read_inputs(path: Path) -> dict[str, Any] | None:
    try:
        return artifacts.read_optional(path, "scan_inputs")
    except ArtifactError as exc:
        logger.warning("%s; the scan runs in full", exc)
        return None


def run(ctx: StageContext) -> StageOutcome:
    """Scan every workflow listed in ``intake.json``; write ``scan.json``; return the outcome with counts."""
    outcome = StageOutcome("scan")
    state = ctx.state_dir
    intake = artifacts.read(state / "intake.json", "intake")
    scan_config = ctx.config.section("scan")
    wanted_hash = settings_hash(scan_config)
    map_path = manager_map.find_map(ctx.config.comfyui_root)
    url = ctx.config.section("comfyui")["url"]
    truth = server.fetch(url) if url else None
    fingerprint = inputs_fingerprint(state, intake, wanted_hash, map_path, truth)

    previous_inputs = _read_inputs(state / INPUTS)
    if previous_inputs is not None and previous_inputs["fingerprint"] == fingerprint and (state / ARTIFACT).exists():
        outcome.counts = {**previous_inputs["counts"], "parsed": 0, "reused": previous_inputs["counts"]["workflows"]}
        outcome.errors = list(previous_inputs["errors"])
        outcome.ok = not outcome.errors
        outcome.detail = f"nothing changed since cycle {previous_inputs['cycle_id']}: {previous_inputs['detail']}"
        logger.info("scan: %s", outcome.detail)
        return outcome

    model_cache = artifacts.read(state / "model_cache.json", "model_cache")
    nodes_cache = artifacts.read(state / "custom_nodes_cache.json", "custom_nodes_cache")
    collecting = gc.isenabled()
    # No reference cycles are made below, only millions of small containers: the cyclic collector would
    # rescan all of them again and again (it doubled the scan's time on a large install).
    gc.disable()
    try:
        document = _scan(ctx, outcome, intake, model_cache, nodes_cache, truth, map_path, wanted_hash)
        # Compact: scan.json runs to tens of megabytes on a large install, and only programs read it.
        artifacts.write(state / ARTIFACT, document, "scan", indent=None)
    finally:
        if collecting:
            gc.enable()
    results = document["workflows"]
    reused = sum(1 for w in results if w["reused"])
    parsed = len(results) - reused
    count_inactive = bool(scan_config["count_inactive_nodes"])
    missing_models = {
        (m["folder"], names.lookup_key(m["name"]))
        for w in results
        for m in w["models"]
        if m["status"] != "installed" and (m["active"] or count_inactive)
    }
    missing_nodes = {
        n["class_type"]
        for w in results
        for n in w["nodes"]
        if n["state"] in ("missing", "disabled") and (n["active"] or count_inactive)
    }
    outcome.counts = {
        "workflows": len(results),
        "parsed": parsed,
        "reused": reused,
        "errors": len(outcome.errors),
        "missing_models": len(missing_models),
        "missing_nodes": len(missing_nodes),
    }
    source = f"checked against the server at {truth.url}" if truth is not None else "checked against the files"
    outcome.detail = (
        f"{len(results)} workflows ({parsed} parsed, {reused} unchanged), {len(outcome.errors)} unreadable; "
        f"{len(missing_models)} models and {len(missing_nodes)} node types missing; {source}"
    )
    artifacts.write(
        state / INPUTS,
        {
            "fingerprint": fingerprint,
            "cycle_id": ctx.cycle_id,
            "counts": outcome.counts,
            "errors": outcome.errors,
            "detail": outcome.detail,
        },
        "scan_inputs",
    )
    logger.info("scan: %s", outcome.detail)
    return outcome


def _scan(
    ctx: StageContext,
    outcome: StageOutcome,
    intake: Mapping[str, Any],
    model_cache: Mapping[str, Any],
    nodes_cache: Mapping[str, Any],
    truth: server.ServerTruth | None,
    map_path: Path | None,
    wanted_hash: str,
) -> dict[str, Any]:
    """Return the scan.json document: parse what changed, reuse the rest, compare everything anew."""
    scan_config = ctx.config.section("scan")
    kept = _previous_requirements(ctx.state_dir / ARTIFACT, wanted_hash)
    loaders = extract.loader_table(scan_config["loaders"])
    placeholders = frozenset(v.strip().casefold() for v in scan_config["placeholder_values"])
    node_map = manager_map.load(map_path)
    evaluator = Evaluator(
        ModelIndex.from_cache(model_cache), NodeIndex.from_cache(nodes_cache, node_map, server=truth), truth
    )

    _init_extract(loaders, placeholders)
    to_parse = [item["path"] for item in intake["workflows"] if item["sha256"] not in kept]
    parsed_now = parse_all(to_parse, worker_count(int(scan_config.get("workers", 0)), len(to_parse)))
    results = []
    for item in intake["workflows"]:
        base = {key: item[key] for key in ("workflow", "path", "source", "sha256")}
        requirements = kept.get(item["sha256"])
        if requirements is None:
            answer = next(parsed_now)
            if isinstance(answer, str):
                outcome.fail(answer)
                failed = {"format": None, "container": None, "error": answer, "reused": False}
                results.append({**base, **failed, "models": [], "nodes": []})
                continue
            requirements = answer
        results.append(
            {
                **base,
                "format": requirements["format"],
                "container": requirements["container"],
                "error": None,
                "reused": item["sha256"] in kept,
                "models": [evaluator.model(m) for m in requirements["models"]],
                "nodes": [evaluator.node(n) for n in requirements["nodes"]],
            }
        )
    return {
        "cycle_id": ctx.cycle_id,
        "generated_at": ctx.now().isoformat(timespec="seconds"),
        "comfyui_root": model_cache["comfyui_root"],
        "demo": model_cache["demo"],
        "settings_hash": wanted_hash,
        "node_map": node_map.source,
        "server": truth.url if truth is not None else None,
        "workflows": results,
    }
