"""Scan: read every workflow, list what it needs, and compare that with the install.

Reads ``intake.json`` and both caches, writes ``state/scan.json``. Per workflow it holds every requirement
and whether the install has it: what is not installed (missing or invalid models, missing or disabled node
types) in full, with origins, declarations and where it was looked for, because search and the report work
from those; what is installed in short (a model's name, folder and the file that matched; a node type's name
and what provides it).

Three levels of reuse keep repeated cycles cheap:

- nothing changed (same workflows and hashes, same caches, same settings, same server answer): the inputs
  fingerprint in ``state/scan_inputs.json`` matches and ``scan.json`` is left as it is, like the caches;
- the install did not change (same caches, node map, settings and server answer) but some workflows did:
  the entries of the unchanged ones are taken as they are from the last ``scan.json`` (when its bytes are
  the ones that scan wrote), and only the new or changed workflows are parsed and compared;
- the install changed: every workflow is compared anew, but one whose content hash is unchanged is not
  parsed again: its requirements come from the store ``state/requirements.pack`` (see ``workflow.store``).

Parsing, comparing, validating and encoding a workflow's entry all happen in worker processes when there
are many; this process only joins the entries (``artifacts.write_assembled``).

When ``[comfyui] url`` names a ComfyUI server that answers ``/object_info``, its node types and combo lists
decide first; every verdict records whether the server or the files gave it (``checked_by``).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import artifacts, progress, resources
from comfywatchman.comfy import manager_map, server
from comfywatchman.comfy.inventory import ModelIndex, NodeIndex
from comfywatchman.errors import ArtifactError
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.workflow import embeddings, extract, names
from comfywatchman.workflow.load import NotAWorkflow, WorkflowError, clean_text, load
from comfywatchman.workflow.store import FILE as STORE_FILE
from comfywatchman.workflow.store import RequirementStore

logger = logging.getLogger(__name__)

ARTIFACT = "scan.json"
INPUTS = "scan_inputs.json"
SCHEMA = "scan"
ENTRY = "workflow"  # the scan schema's definition of one workflow entry
ENTRY_FORMAT = 2  # bump when an entry gains fields, so entries kept from an older scan.json are made anew
# Requirements found by a loader widget; only these can be checked against a server's combo list.
_COMBO_VIAS = frozenset({"widget", "primitive", "promoted"})
# Node states that mean the type is there: such types are listed by name only.
PROVIDED = frozenset({"core", "frontend", "installed"})
# Below this many workflows to parse, worker processes cost more to start than they save.
MIN_PARALLEL = 64
MAX_WORKERS = 8
# Linux prctl option: the signal a process gets when the thread that forked it ends.
PR_SET_PDEATHSIG = 1


class Evaluator:
    """Compares requirements with the install, remembering each verdict (many workflows share files)."""

    def __init__(self, models: ModelIndex, nodes: NodeIndex, truth: server.ServerTruth | None) -> None:
        self.models = models
        self.nodes = nodes
        self.truth = truth
        self._model_memo: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._node_memo: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}

    def _model(self, ref: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        origins = ref["origins"]
        active = not origins
        prompt_only = bool(origins)
        combo = None
        for origin in origins:
            if origin["mode"] == "active":
                active = True
            via = origin["via"]
            if via != "prompt":
                prompt_only = False
            if combo is None and via in _COMBO_VIAS and origin["input"]:
                combo = (origin["node_type"], origin["input"])
        key = (ref["name"], ref["folder"], prompt_only, combo if self.truth is not None else None)
        verdict = self._model_memo.get(key)
        if verdict is None:
            verdict = self._model_memo[key] = self._model_verdict(ref["name"], ref["folder"], prompt_only, key[3])
        return active, verdict

    def _model_verdict(
        self, name: str, folder: str | None, prompt_only: bool, combo: tuple[str, str] | None
    ) -> dict[str, Any]:
        reason = names.invalid_reason(name)
        if reason is not None:
            return {
                "invalid_reason": reason,
                "status": "invalid",
                "installed_as": None,
                "note": "",
                "looked_in": [],
                "checked_by": "files",
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

    def node_verdict(self, class_type: str, made_with: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Return ``state, packs, checked_by`` for one node type (``made_with``: the pack the workflow says
        its node was made with, which names the pack to install first)."""
        key = (class_type, made_with.get("cnr_id"), made_with.get("aux_id")) if made_with else (class_type, None, None)
        verdict = self._node_memo.get(key)
        if verdict is None:
            state = self.nodes.state(class_type, made_with)
            verdict = self._node_memo[key] = {
                "state": state.state,
                "packs": state.packs,
                "checked_by": state.checked_by,
            }
        return verdict

    def entry_parts(self, requirements: Mapping[str, Any]) -> dict[str, Any]:
        """Return a workflow entry's ``models``, ``installed_models``, ``nodes`` and ``provided_nodes``."""
        models: list[dict[str, Any]] = []
        installed: list[dict[str, Any]] = []
        for ref in requirements["models"]:
            active, verdict = self._model(ref)
            if verdict["status"] == "installed":
                short = {"name": ref["name"], "folder": ref["folder"], "installed_as": verdict["installed_as"]}
                short["active"] = active
                if verdict["checked_by"] == "server":
                    short["checked_by"] = "server"
                declared = declared_hashes(ref["declarations"])
                if declared:
                    short["declared"] = declared  # what the verify stage checks the file against (drift)
                installed.append(short)
            else:
                models.append({**ref, "active": active, **verdict})
        nodes: list[dict[str, Any]] = []
        provided: dict[str, str] = {}
        for ref in requirements["nodes"]:
            verdict = self.node_verdict(ref["class_type"], ref.get("made_with"))
            if verdict["state"] in PROVIDED:
                provided[ref["class_type"]] = verdict["state"]
            else:
                modes = ref["modes"]
                nodes.append({**ref, "active": not modes or "active" in modes, **verdict})
        return {"models": models, "installed_models": installed, "nodes": nodes, "provided_nodes": provided}


def declared_hashes(declarations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``{sha256, url}`` of each declaration giving a sha256 (``hash_type`` sha256 or unset)."""
    out = []
    for decl in declarations:
        value, kind = decl["hash"], (decl["hash_type"] or "sha256").strip().lower()
        if value and kind == "sha256":
            item = {"sha256": value.strip().lower(), "url": decl["url"]}
            if item not in out:
                out.append(item)
    return out


@dataclass
class ScanSettings:
    """What scanning one workflow needs: extraction settings, the evaluator, the store and the count rule."""

    loaders: dict[str, list[extract.LoaderInput]]
    placeholders: frozenset[str]
    evaluator: Evaluator
    store: RequirementStore
    count_inactive: bool
    max_bytes: int | None = None  # a larger workflow file is an error row, not read


class Scanned(NamedTuple):
    """One workflow's entry as compact JSON text, with what the stage's counts need from it."""

    text: str
    error: str | None
    reused: bool
    missing_models: list[tuple[str | None, str]]  # (folder, lookup key) of each counted missing model
    missing_nodes: list[str]  # each counted missing or disabled node type
    kept: bytes | None = None  # requirements parsed now, encoded for the store
    not_workflow: bool = False  # an image without a workflow: ``text`` is its not_workflows entry


# Set in each worker process (and in this one for the serial path).
_SETTINGS: ScanSettings | None = None


def _init_worker(settings: ScanSettings, parent: int) -> None:
    global _SETTINGS
    _SETTINGS = settings
    # Parsed workflows hold no reference cycles; the cyclic collector would only rescan every object made.
    gc.disable()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Make this worker exit when the process ``parent`` (its pid taken before the fork) dies, so a killed
    cycle leaves no orphans.

    Read here, ``os.getppid()`` of a worker forked just as its cycle was killed is already 1 (init), and a
    watcher comparing with that waits forever; ``parent`` is the pid the scan had. On Linux the kernel also
    sends SIGKILL on the parent's death (PR_SET_PDEATHSIG), with no polling.
    """
    if os.getppid() != parent:
        os._exit(1)  # the parent died before this worker got here
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below still notices
        if os.getppid() != parent:  # died between the check above and the prctl
            os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def requirements_of(
    path: str,
    loaders: Mapping[str, list[extract.LoaderInput]],
    placeholders: frozenset[str],
    size: int | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, Any] | str, bool]:
    """Return the requirement data of the workflow at ``path`` (format, container, models, nodes), or the
    one-line error naming the file when it cannot be read as a workflow; and whether the file still has
    ``size`` bytes (so what was read is what intake hashed).

    Whatever is wrong with the file ends here as its error, never as an exception (NotAWorkflow excepted:
    an image without a workflow is raised for the caller to count). Files larger than ``max_bytes`` are
    not read.
    """
    try:
        workflow, raw = load(Path(path), max_bytes)
        data = {
            "format": workflow.format,
            "container": workflow.container,
            **extract.extract(workflow, loaders, placeholders).to_json(),
        }
    except NotAWorkflow:
        raise
    except WorkflowError as exc:
        return clean_text(str(exc)), False
    except extract.TooLarge as exc:
        return clean_text(f"{path}: {exc}; not read as a workflow"), False
    except (Exception, RecursionError) as exc:  # a file must never stop the scan of the others
        logger.debug("%s: reading failed:", path, exc_info=True)
        return clean_text(f"{path}: cannot be read as a workflow ({type(exc).__name__}: {exc})"[:2000]), False
    return data, size is None or len(raw) == size


def counted(entry: Mapping[str, Any], count_inactive: bool) -> tuple[list[tuple[str | None, str]], list[str]]:
    """Return the missing models (folder, lookup key) and node types of an entry that count against it."""
    models = [(m["folder"], names.lookup_key(m["name"])) for m in entry["models"] if m["active"] or count_inactive]
    nodes = [n["class_type"] for n in entry["nodes"] if n["active"] or count_inactive]
    return models, nodes


def _entry(base: Mapping[str, Any], requirements: Mapping[str, Any], reused: bool, settings: ScanSettings) -> Scanned:
    entry = {
        **base,
        "format": requirements["format"],
        "container": requirements["container"],
        "error": None,
        "reused": reused,
        **settings.evaluator.entry_parts(requirements),
    }
    text = artifacts.part_text(entry, SCHEMA, ENTRY, f"{base['path']}: its scan.json entry")
    return Scanned(text, None, reused, *counted(entry, settings.count_inactive))


def scan_one(job: tuple[dict[str, Any], int | None]) -> Scanned:
    """Return the scan.json entry of one workflow (``job``: the intake fields kept in it, and the file's size),
    from its kept requirements when the store has them, else by parsing the file.

    Never raises for anything in the file: what cannot be read is an entry with its ``error``; an image
    without a workflow is a ``not_workflow`` result.
    """
    settings = _SETTINGS
    assert settings is not None
    base, size = job
    kept = settings.store.get(base["sha256"])
    if kept is not None:
        try:
            return _entry(base, kept, True, settings)
        except (ArtifactError, KeyError, TypeError, ValueError) as exc:
            # Kept requirements that do not make a valid entry (from a foreign version): parse again.
            logger.warning("%s: kept requirements unusable (%s); parsed again", base["path"], exc)
    try:
        answer, whole = requirements_of(base["path"], settings.loaders, settings.placeholders, size, settings.max_bytes)
    except NotAWorkflow as exc:
        return _not_workflow(base, clean_text(str(exc)))
    if isinstance(answer, str):
        return _failed(base, answer)
    try:
        made = _entry(base, answer, False, settings)
        # A file that changed since intake hashed it is not kept under that hash.
        return made._replace(kept=settings.store.encode(answer)) if whole else made
    except (Exception, RecursionError) as exc:  # an entry that cannot be written is that file's error only
        logger.debug("%s: entry failed:", base["path"], exc_info=True)
        return _failed(base, clean_text(f"{base['path']}: cannot be listed ({type(exc).__name__}: {exc})"[:2000]))


def _failed(base: Mapping[str, Any], error: str) -> Scanned:
    """Return the entry of a workflow that could not be read: its ``error``, nothing required."""
    failed = {
        **base,
        "format": None,
        "container": None,
        "error": error,
        "reused": False,
        "models": [],
        "installed_models": [],
        "nodes": [],
        "provided_nodes": {},
    }
    return Scanned(artifacts.part_text(failed, SCHEMA, ENTRY, base["path"]), error, False, [], [])


def _not_workflow(base: Mapping[str, Any], reason: str) -> Scanned:
    """Return the not_workflows entry of an image that carries no workflow."""
    text = json.dumps({**base, "reason": reason}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return Scanned(text, None, False, [], [], not_workflow=True)


def worker_count(configured: int, jobs: int) -> int:
    """Return how many worker processes to scan ``jobs`` workflows with (1: scan in this process)."""
    if jobs < MIN_PARALLEL:
        return 1
    if configured > 0:
        return configured
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def scan_all(jobs: list[tuple[dict[str, Any], int | None]], settings: ScanSettings, workers: int) -> Iterator[Scanned]:
    """Yield ``scan_one`` for each of ``jobs``, in order, over ``workers`` processes when more than one."""
    global _SETTINGS
    if workers <= 1:
        _SETTINGS = settings
        try:
            yield from map(scan_one, jobs)
        finally:
            _SETTINGS = None  # the indexes are not kept alive past the scan
        return
    methods = multiprocessing.get_all_start_methods()
    # fork starts workers in milliseconds and shares the loaded code and the indexes; elsewhere the default.
    context = multiprocessing.get_context("fork") if "fork" in methods else None
    chunk = max(1, min(16, len(jobs) // (workers * 8) or 1))
    # The pid is taken here, before the fork: a worker cannot learn it reliably afterwards (see _exit_with_parent).
    initargs = (settings, os.getpid())
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
        yield from pool.map(scan_one, jobs, chunksize=chunk)


def settings_hash(scan_config: Mapping[str, Any]) -> str:
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


def install_fingerprint(
    state: Path, comfyui_root: str, wanted_hash: str, map_path: Path | None, truth: server.ServerTruth | None
) -> str:
    """Return a hash of everything a workflow's verdicts depend on besides its own content."""
    return artifacts.content_hash(
        {
            "settings": wanted_hash,
            "comfyui_root": comfyui_root,
            # The cache stage rewrites its files only when their content changes, so their bytes stand for it.
            "model_cache": _file_digest(state / "model_cache.json"),
            "nodes_cache": _file_digest(state / "custom_nodes_cache.json"),
            "node_map": _file_digest(map_path),
            "data": [_file_digest(resources.DATA_DIR / n) for n in ("core_nodes.txt", "frontend_nodes.json")],
            "server": truth.digest if truth is not None else None,
            "entry_format": ENTRY_FORMAT,
        }
    )


def inputs_fingerprint(install: str, intake: Mapping[str, Any]) -> str:
    """Return a hash of everything scan.json is computed from, bar the cycle id and the clock."""
    return artifacts.content_hash(
        {
            "install": install,
            "workflows": [[w["path"], w["workflow"], w["source"], w["sha256"]] for w in intake["workflows"]],
        }
    )


def _read_inputs(path: Path) -> dict[str, Any] | None:
    try:
        return artifacts.read_optional(path, "scan_inputs")
    except ArtifactError as exc:
        logger.warning("%s; the scan runs in full", exc)
        return None


def previous_entries(path: Path, inputs: Mapping[str, Any] | None, install: str) -> dict[str, dict[str, Any]]:
    """Return sha256 -> entry of the readable workflows in the last scan.json, when the install it was compared
    with is the same as now and the file holds the very bytes that scan wrote (it was validated then, so it
    is not validated again); else nothing."""
    if inputs is None or inputs.get("install") != install or not inputs.get("scan_sha256"):
        return {}
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    if hashlib.sha256(raw).hexdigest() != inputs["scan_sha256"]:
        logger.info("%s: not the file the last scan wrote; every workflow is compared anew", path)
        return {}
    try:
        return {w["sha256"]: w for w in json.loads(raw)["workflows"] if w["error"] is None}
    except (ValueError, KeyError, TypeError):
        return {}


def run(ctx: StageContext) -> StageOutcome:
    """Scan every workflow listed in ``intake.json``; write ``scan.json``; return the outcome with counts."""
    outcome = StageOutcome("scan")
    state = ctx.state_dir
    intake = artifacts.read(state / "intake.json", "intake")
    scan_config = ctx.config.section("scan")
    wanted_hash = settings_hash(scan_config)
    map_path = manager_map.find_map(ctx.config.comfyui_root)
    url = ctx.config.section("comfyui")["url"]
    # --offline means no network: a server on this machine may still be asked, as the gate does.
    truth = server.fetch(url) if url and (not ctx.config.offline or server.is_loopback(url)) else None
    install = install_fingerprint(state, intake["comfyui_root"], wanted_hash, map_path, truth)
    fingerprint = inputs_fingerprint(install, intake)

    previous_inputs = _read_inputs(state / INPUTS)
    if previous_inputs is not None and previous_inputs["fingerprint"] == fingerprint and (state / ARTIFACT).exists():
        outcome.counts = {**previous_inputs["counts"], "parsed": 0, "reused": previous_inputs["counts"]["workflows"]}
        outcome.detail = f"nothing changed since cycle {previous_inputs['cycle_id']}: {previous_inputs['detail']}"
        logger.info("scan: %s", outcome.detail)
        return outcome

    collecting = gc.isenabled()
    # No reference cycles are made below, only millions of small containers: the cyclic collector would
    # rescan all of them again and again (it doubled the scan's time on a large install).
    gc.disable()
    try:
        results, head = _scan(ctx, outcome, intake, truth, map_path, wanted_hash, previous_inputs, install)
        # Compact: scan.json runs to megabytes on a large install, and only programs read it.
        texts = [r.text for r in results if not r.not_workflow]
        written = artifacts.write_assembled(state / ARTIFACT, head, "workflows", texts, SCHEMA)
    finally:
        if collecting:
            gc.enable()
    # A file that cannot be read is a finding of the report (its entry's error), not a failure of the stage:
    # the stage did its job for every other workflow.
    unreadable = [r.error for r in results if r.error is not None]
    _log_unreadable(unreadable)
    outcome.counts, outcome.detail = _summary(results, unreadable, truth)
    errors = unreadable
    artifacts.write(
        state / INPUTS,
        {
            "fingerprint": fingerprint,
            "install": install,
            "scan_sha256": written,
            "cycle_id": ctx.cycle_id,
            "counts": outcome.counts,
            "errors": errors,
            "detail": outcome.detail,
        },
        "scan_inputs",
    )
    logger.info("scan: %s", outcome.detail)
    return outcome


def _log_unreadable(unreadable: list[str]) -> None:
    """Log each unreadable workflow at INFO and one line for all of them at WARNING (cron sees one line)."""
    for error in unreadable:
        logger.info("%s", error)
    if unreadable:
        more = f" and {len(unreadable) - 1} more (listed in the report)" if len(unreadable) > 1 else ""
        logger.warning("scan: cannot read %s%s", unreadable[0], more)


def _summary(
    results: list[Scanned], unreadable: list[str], truth: server.ServerTruth | None
) -> tuple[dict[str, int], str]:
    """Return the stage's counts and its one-line detail."""
    workflows = [r for r in results if not r.not_workflow]
    reused = sum(1 for r in workflows if r.reused)
    parsed = len(workflows) - reused
    missing_models = {key for r in workflows for key in r.missing_models}
    missing_nodes = {class_type for r in workflows for class_type in r.missing_nodes}
    counts = {
        "workflows": len(workflows),
        "parsed": parsed,
        "reused": reused,
        "errors": len(unreadable),
        "not_workflows": len(results) - len(workflows),
        "missing_models": len(missing_models),
        "missing_nodes": len(missing_nodes),
    }
    source = f"checked against the server at {truth.url}" if truth is not None else "checked against the files"
    images = f", {counts['not_workflows']} images without a workflow" if counts["not_workflows"] else ""
    detail = (
        f"{len(workflows)} workflows ({parsed} parsed, {reused} unchanged), {len(unreadable)} unreadable{images}; "
        f"{len(missing_models)} models and {len(missing_nodes)} node types missing; {source}"
    )
    return counts, detail


def _scan_settings(scan_config: Mapping[str, Any], evaluator: Evaluator, store: RequirementStore) -> ScanSettings:
    """Return the ScanSettings the [scan] section ``scan_config`` asks for, checking with ``evaluator`` and
    storing what extraction found in ``store``."""
    return ScanSettings(
        loaders=extract.loader_table(scan_config["loaders"]),
        placeholders=frozenset(v.strip().casefold() for v in scan_config["placeholder_values"]),
        evaluator=evaluator,
        store=store,
        count_inactive=bool(scan_config["count_inactive_nodes"]),
        max_bytes=int(float(scan_config.get("max_workflow_mb", 32)) * 1_000_000),
    )


def _scan(
    ctx: StageContext,
    outcome: StageOutcome,
    intake: Mapping[str, Any],
    truth: server.ServerTruth | None,
    map_path: Path | None,
    wanted_hash: str,
    previous_inputs: Mapping[str, Any] | None,
    install: str,
) -> tuple[list[Scanned], dict[str, Any]]:
    """Return every workflow's entry, in intake order, and the rest of the scan.json document: entries of
    unchanged workflows kept when the install is unchanged, the others made (in worker processes when many)."""
    scan_config = ctx.config.section("scan")
    count_inactive = bool(scan_config["count_inactive_nodes"])
    state = ctx.state_dir
    store = RequirementStore(state / STORE_FILE, wanted_hash)
    kept = previous_entries(state / ARTIFACT, previous_inputs, install)
    model_cache = artifacts.read(state / "model_cache.json", "model_cache")
    node_map = manager_map.load(map_path)

    results: list[Scanned | None] = []
    jobs: list[tuple[dict[str, Any], int | None]] = []
    for item in intake["workflows"]:
        base = {key: item[key] for key in ("workflow", "path", "source", "sha256")}
        previous = kept.get(item["sha256"])
        if previous is None:
            jobs.append((base, item.get("size")))
            results.append(None)
            continue
        entry = {**previous, **base, "reused": True}
        # Kept as written (validated then); only the intake fields and "reused" may differ, both valid.
        text = json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        results.append(Scanned(text, None, True, *counted(entry, count_inactive)))

    if jobs:
        nodes_cache = artifacts.read(state / "custom_nodes_cache.json", "custom_nodes_cache")
        store.load()  # before the workers start, so they share what it read
        evaluator = Evaluator(
            ModelIndex.from_cache(model_cache), NodeIndex.from_cache(nodes_cache, node_map, server=truth), truth
        )
        settings = _scan_settings(scan_config, evaluator, store)
        workers = worker_count(int(scan_config.get("workers", 0)), len(jobs))
        made = progress.track(scan_all(jobs, settings, workers), len(jobs), "scan", "workflow")
        for index, slot in enumerate(results):
            if slot is None:
                results[index] = next(made)
    done: list[Scanned] = [r for r in results if r is not None]
    for item, result in zip(intake["workflows"], done, strict=True):
        if result.kept is not None:
            store.add(item["sha256"], result.kept)
    if jobs:
        store.save({item["sha256"] for item in intake["workflows"]})
    head = {
        "cycle_id": ctx.cycle_id,
        "generated_at": ctx.now().isoformat(timespec="seconds"),
        "comfyui_root": model_cache["comfyui_root"],
        "demo": model_cache["demo"],
        "settings_hash": wanted_hash,
        "node_map": node_map.source,
        "server": truth.url if truth is not None else None,
        "not_workflows": [json.loads(r.text) for r in done if r.not_workflow],
        "workflows": [],
    }
    return done, head
