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
  the entries of the unchanged ones are their lines of the last ``scan.json``, copied (when its bytes are
  the ones that scan wrote; see ``scan_kept``: where each line is, and its counts, come from
  ``state/scan_lines.json``, written with scan.json), and only the new or changed workflows are parsed and
  compared;
- the install changed: every workflow is compared anew, but one whose content hash is unchanged is not
  parsed again: its requirements come from the store ``state/requirements.pack`` (see ``workflow.store``).

When many workflows must be parsed, lean worker processes read and extract them (``workflow.parse_worker``)
while this process compares, validates and encodes each entry. Entries go to ``scan.json`` as they are made,
in intake order (``artifacts.AssembledWriter``): the stage holds the counts of its report, never every entry.
When only a few are made, they are made first and ``scan.json`` is written once, head first
(``artifacts.HeadFirstWriter``), the kept lines copied a run at a time (``Lines``).

When ``[comfyui] url`` names a ComfyUI server that answers ``/object_info``, its node types and combo lists
decide first; every verdict records whether the server or the files gave it (``checked_by``).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import logging
import operator
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from comfywatchman import artifacts, catalogue, lazy, progress, resources, stage_inputs
from comfywatchman.comfy import manager_map, server
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting import scan_keys
from comfywatchman.stages import collector, scan_parts
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.stages.scan_digests import Recorder
from comfywatchman.stages.scan_kept import BASE_KEYS, LINES_FILE, KeptEntries, KeptLine, LinesRecord
from comfywatchman.workflow import names
from comfywatchman.workflow.extractor_version import EXTRACTOR_VERSION
from comfywatchman.workflow.store import FILE as STORE_FILE
from comfywatchman.workflow.store import RequirementStore

if TYPE_CHECKING:
    from comfywatchman.comfy import inventory
    from comfywatchman.comfy.inventory import ModelIndex, NodeIndex
    from comfywatchman.workflow import embeddings, extract, load, parse_worker
else:
    # Imported when first used: a cycle where nothing changed returns before parsing or comparing anything.
    inventory = lazy.module("comfywatchman.comfy.inventory")
    embeddings = lazy.module("comfywatchman.workflow.embeddings")
    extract = lazy.module("comfywatchman.workflow.extract")
    load = lazy.module("comfywatchman.workflow.load")
    parse_worker = lazy.module("comfywatchman.workflow.parse_worker")

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
# Verdicts remembered at most (about 0.6 KB each); past it the memo starts again.
MEMO_LIMIT = 20_000
MAX_WORKERS = 8
# Kept lines copied from the last scan.json are read and written in runs of about this many bytes at most.
RUN_BYTES = 1 << 20
_NOT_REUSED = b'"reused":false'
_REUSED = b'"reused":true'
_AFTER_NOT_REUSED = b',"sha256":"'  # the key after "reused" in an entry (keys are sorted)


# What a verdict on a model or a node type sets in an entry's item (after the reference's own fields).
MODEL_VERDICT_KEYS = ("invalid_reason", "status", "installed_as", "note", "looked_in", "checked_by")
NODE_VERDICT_KEYS = ("state", "packs", "checked_by")


def usage(origins: list[Mapping[str, Any]], with_combo: bool) -> tuple[bool, bool, tuple[str, str] | None]:
    """Return whether a model reference with ``origins`` is active, whether only prompt text names it, and
    the loader input (node type, input) a server's combo list can check it with (``with_combo``: a server
    answered), if any."""
    active = not origins
    prompt_only = bool(origins)
    combo = None
    for origin in origins:
        if origin["mode"] == "active":
            active = True
        via = origin["via"]
        if via != "prompt":
            prompt_only = False
        if with_combo and combo is None and via in _COMBO_VIAS and origin["input"]:
            combo = (origin["node_type"], origin["input"])
    return active, prompt_only, combo


def node_key(class_type: str, made_with: Mapping[str, str] | None) -> tuple[str, str | None, str | None]:
    """Return what a node type's verdict depends on besides the install: the type and the pack it names."""
    return (class_type, made_with.get("cnr_id"), made_with.get("aux_id")) if made_with else (class_type, None, None)


def _installed_by_files(installed_as: str) -> dict[str, Any]:
    """Return the verdict on a model the files show installed as ``installed_as``."""
    return {
        "invalid_reason": None,
        "status": "installed",
        "installed_as": installed_as,
        "note": "",
        "looked_in": [],
        "checked_by": "files",
    }


class Evaluator:
    """Compares requirements with the install, remembering each verdict (many workflows share files).

    ``models`` and ``nodes`` are the indexes, or what makes each when first needed: verdicts seeded from the
    last scan (``seed``) may leave one of them never needed.
    """

    def __init__(
        self,
        models: ModelIndex | Callable[[], ModelIndex],
        nodes: NodeIndex | Callable[[], NodeIndex],
        truth: server.ServerTruth | None,
    ) -> None:
        self._models: ModelIndex | None = models if isinstance(models, inventory.ModelIndex) else None
        self._make_models: Callable[[], ModelIndex] | None = (
            None if isinstance(models, inventory.ModelIndex) else models
        )
        self._nodes: NodeIndex | None = nodes if isinstance(nodes, inventory.NodeIndex) else None
        self._make_nodes: Callable[[], NodeIndex] | None = None if isinstance(nodes, inventory.NodeIndex) else nodes
        self.truth = truth
        self._model_memo: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._node_memo: dict[tuple[str, str | None, str | None], dict[str, Any]] = {}
        # Node type -> its state, where core, frontend or installed (seeded, or found): such a state never depends
        # on the pack a node names (``NodeIndex.state``), so a type found provided once is provided for every node.
        self._provided: dict[str, str] = {}

    @property
    def models(self) -> ModelIndex:
        """The model index (made when first asked for)."""
        if self._models is None:
            assert self._make_models is not None
            self._models = self._make_models()
        return self._models

    @property
    def nodes(self) -> NodeIndex:
        """The node index (made when first asked for)."""
        if self._nodes is None:
            assert self._make_nodes is not None
            self._nodes = self._make_nodes()
        return self._nodes

    def seed(self, entry: Mapping[str, Any]) -> None:
        """Remember the verdicts a scan.json entry holds, made against this very install: those on its models
        and node types that are not installed (in full), and the states of its provided node types (which
        never depend on the pack a node names). A scan of a few changed workflows seeds the verdicts of their
        last versions, so the references they still share need no index."""
        with_combo = self.truth is not None
        models = {}
        for item in entry["models"]:
            _active, prompt_only, combo = usage(item["origins"], with_combo)
            models[item["name"], item["folder"], prompt_only, combo] = {k: item[k] for k in MODEL_VERDICT_KEYS}
        if not with_combo:
            for short in entry["installed_models"]:
                # Installed ones are listed without origins, so their key is known only where it cannot depend
                # on them: no server list to check with, and outside embeddings (only prompt text names files
                # there, and whether only prompt text does changes the lookup).
                if short["folder"] != "embeddings":
                    models[short["name"], short["folder"], False, None] = _installed_by_files(short["installed_as"])
        nodes = {
            node_key(n["class_type"], n.get("made_with")): {k: n[k] for k in NODE_VERDICT_KEYS} for n in entry["nodes"]
        }
        provided = dict(entry["provided_nodes"])
        # Read in full before any is kept: an entry that does not read as one seeds nothing.
        if len(self._model_memo) + len(models) < MEMO_LIMIT:
            self._model_memo.update(models)
        self._node_memo.update(nodes)
        self._provided.update(provided)

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
        if folder is not None and not prompt_only:
            # What nearly every loader asks: one folder, the name as written (ModelIndex.find, inlined).
            installed, installed_as, note = self.models.lookup_in(names.normalize(name), folder)
            return {
                "invalid_reason": None,
                "status": "installed" if installed else "missing",
                "installed_as": installed_as,
                "note": note,
                "looked_in": [] if installed else self.models.looked_in(folder),
                "checked_by": "files",
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
        key = node_key(class_type, made_with)
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
        """Return a workflow entry's ``models``, ``installed_models``, ``nodes`` and ``provided_nodes``.

        Runs for every model and node of every workflow compared: what ``_model`` and ``node_verdict`` do is
        done inline here, with their memos.
        """
        models: list[dict[str, Any]] = []
        installed: list[dict[str, Any]] = []
        memo = self._model_memo
        with_combo = self.truth is not None
        for ref in requirements["models"]:
            active, prompt_only, combo = usage(ref["origins"], with_combo)
            name, folder = ref["name"], ref["folder"]
            key = (name, folder, prompt_only, combo)
            verdict = memo.get(key)
            if verdict is None:
                if len(memo) >= MEMO_LIMIT:
                    memo.clear()  # bounded: workflows share few files in practice, and memory must not grow
                verdict = memo[key] = self._model_verdict(name, folder, prompt_only, combo)
            if verdict["status"] == "installed":
                short = {"name": name, "folder": folder, "installed_as": verdict["installed_as"], "active": active}
                if verdict["checked_by"] == "server":
                    short["checked_by"] = "server"
                if ref["declarations"]:
                    declared = declared_hashes(ref["declarations"])
                    if declared:
                        short["declared"] = declared  # what the verify stage checks the file against (drift)
                installed.append(short)
            else:
                models.append({**ref, "active": active, **verdict})
        nodes: list[dict[str, Any]] = []
        provided: dict[str, str] = {}
        node_memo = self._node_memo
        known = self._provided
        for ref in requirements["nodes"]:
            class_type = ref["class_type"]
            state = known.get(class_type)
            if state is not None:  # provided, whatever pack the node names (nearly every node type)
                provided[class_type] = state
                continue
            made_with = ref.get("made_with")
            # node_key, inlined: it runs for every node type not provided
            if made_with:
                verdict = node_memo.get((class_type, made_with.get("cnr_id"), made_with.get("aux_id")))
            else:
                verdict = node_memo.get((class_type, None, None))
            if verdict is None:
                verdict = self.node_verdict(class_type, made_with)
            if verdict["state"] in PROVIDED:
                provided[class_type] = known[class_type] = verdict["state"]
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


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class ScanSettings:
    """What scanning one workflow needs: extraction settings, the evaluator, the store and the count rule."""

    __slots__ = (
        "config_loaders", "count_inactive", "evaluator", "loaders", "max_bytes", "placeholders", "primed", "store",
    )  # fmt: skip

    loaders: dict[str, list[extract.LoaderInput]]
    placeholders: frozenset[str]
    evaluator: Evaluator
    store: RequirementStore
    count_inactive: bool
    max_bytes: int | None  # a larger workflow file is an error row, not read
    config_loaders: Mapping[str, Any]  # [scan.loaders] as configured (workers)
    primed: tuple[Callable[[Any], Any], ...]  # what the next stages take of an entry (``scan_parts.Primer``)

    def __init__(
        self,
        loaders: dict[str, list[extract.LoaderInput]],
        placeholders: frozenset[str],
        evaluator: Evaluator,
        store: RequirementStore,
        count_inactive: bool,
        max_bytes: int | None = None,
        config_loaders: Mapping[str, Any] | None = None,
        primed: tuple[Callable[[Any], Any], ...] = (),
    ) -> None:
        self.loaders, self.placeholders, self.evaluator, self.store = loaders, placeholders, evaluator, store
        self.count_inactive, self.max_bytes = count_inactive, max_bytes
        self.config_loaders = {} if config_loaders is None else config_loaders
        self.primed = primed


class Scanned(NamedTuple):
    """One workflow's entry as compact JSON text (UTF-8), with what the stage's counts need from it."""

    text: bytes
    error: str | None
    reused: bool
    missing_models: list[tuple[str | None, str]]  # (folder, lookup key) of each counted missing model
    missing_nodes: list[str]  # each counted missing or disabled node type
    kept: bytes | None = None  # requirements parsed now, encoded for the store
    not_workflow: bool = False  # an image without a workflow: ``text`` is its not_workflows entry
    parts: tuple[bytes | None, ...] | None = None  # the next stages' parts of the entry (``scan_parts.Primer``)


# Set by _init_worker (kept for a process that forks a worker of its own).
_SETTINGS: ScanSettings | None = None


def _init_worker(settings: ScanSettings | None, parent: int) -> None:
    global _SETTINGS
    _SETTINGS = settings
    # Parsed workflows hold no reference cycles; the cyclic collector would only rescan every object made.
    gc.disable()
    parse_worker.exit_with_parent(parent)


def counted(entry: Mapping[str, Any], count_inactive: bool) -> tuple[list[tuple[str | None, str]], list[str]]:
    """Return the missing models (folder, lookup key) and node types of an entry that count against it."""
    models = [(m["folder"], names.lookup_key(m["name"])) for m in entry["models"] if m["active"] or count_inactive]
    nodes = [n["class_type"] for n in entry["nodes"] if n["active"] or count_inactive]
    return models, nodes


def entry_text(entry: Mapping[str, Any], source: str) -> bytes:
    """Validate a workflow entry (one jsonschema-rs call when valid) and return its compact canonical text."""
    artifacts.validate(entry, SCHEMA, source, ENTRY)
    try:
        return orjson.dumps(entry, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # what orjson refuses, the standard library writes (as artifacts.dumps does)
        return artifacts.dumps(entry, indent=None)[:-1].encode("utf-8")


def _entry(
    base: Mapping[str, Any],
    requirements: Mapping[str, Any],
    reused: bool,
    settings: ScanSettings,
    kept: bytes | None = None,
) -> Scanned:
    """Return the entry of the workflow ``base`` that has ``requirements`` (``kept``: their encoding, for the
    store, when they were parsed now from the file intake hashed)."""
    entry = {
        **base,
        "format": requirements["format"],
        "container": requirements["container"],
        "error": None,
        "reused": reused,
        **settings.evaluator.entry_parts(requirements),
    }
    text = entry_text(entry, f"{base['path']}: its scan.json entry")
    parts = scan_parts.payloads(settings.primed, entry) if settings.primed else None
    return Scanned(text, None, reused, *counted(entry, settings.count_inactive), kept=kept, parts=parts)


def _from_store(base: Mapping[str, Any], settings: ScanSettings) -> Scanned | None:
    """Return the entry made from the requirements the store keeps for ``base``'s content, or None."""
    kept = settings.store.get(base["sha256"])
    if kept is None:
        return None
    try:
        return _entry(base, kept, True, settings)
    except (ArtifactError, KeyError, TypeError, ValueError) as exc:
        # Kept requirements that do not make a valid entry (from a foreign version): parse again.
        logger.warning("%s: kept requirements unusable (%s); parsed again", base["path"], exc)
        return None


def scan_one(job: tuple[dict[str, Any], int | None]) -> Scanned:
    """Return the scan.json entry of one workflow (``job``: the intake fields kept in it, and the file's size),
    from its kept requirements when the store has them, else by parsing the file, in this process.

    Never raises for anything in the file: what cannot be read is an entry with its ``error``; an image
    without a workflow is a ``not_workflow`` result.
    """
    settings = _SETTINGS
    assert settings is not None
    base, size = job
    made = _from_store(base, settings)
    if made is not None:
        return made
    kind, body = parse_worker.answer(base["path"], size, settings.loaders, settings.placeholders, settings.max_bytes)
    return _answered(base, kind, body, settings)


def _answered(base: Mapping[str, Any], kind: bytes, body: bytes, settings: ScanSettings) -> Scanned:
    """Return the entry of the workflow ``base`` from a reader's answer (see ``parse_worker``)."""
    if kind == parse_worker.NOT_WORKFLOW:
        return _not_workflow(base, body.decode("utf-8"))
    if kind == parse_worker.ERROR:
        return _failed(base, body.decode("utf-8"))
    if kind == parse_worker.LOST:
        return scan_one((dict(base), None))
    try:
        # A file that changed since intake hashed it is not kept under that hash.
        kept = body if kind == parse_worker.REQUIREMENTS else None
        return _entry(base, orjson.loads(body), False, settings, kept)
    except (Exception, RecursionError) as exc:  # an entry that cannot be written is that file's error only
        logger.debug("%s: entry failed:", base["path"], exc_info=True)
        return _failed(base, load.clean_text(f"{base['path']}: cannot be listed ({type(exc).__name__}: {exc})"[:2000]))


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
    return Scanned(entry_text(failed, base["path"]), error, False, [], [])


def _not_workflow(base: Mapping[str, Any], reason: str) -> Scanned:
    """Return the not_workflows entry of an image that carries no workflow."""
    text = json.dumps({**base, "reason": reason}, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return Scanned(text.encode("utf-8"), None, False, [], [], not_workflow=True)


def worker_count(configured: int, jobs: int) -> int:
    """Return how many worker processes to scan ``jobs`` workflows with (1: scan in this process)."""
    if jobs < MIN_PARALLEL:
        return 1
    if configured > 0:
        return configured
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


def start_workers(
    workers: int, config_loaders: Mapping[str, Any], placeholders: frozenset[str], max_bytes: int | None
) -> parse_worker.Workers | None:
    """Return ``workers`` started worker processes, or None for none (one asked for, or they cannot start)."""
    if workers <= 1:
        return None
    try:
        return parse_worker.Workers(workers, config_loaders, placeholders, max_bytes)
    except OSError as exc:  # no interpreter to start (a frozen build), no processes left
        logger.warning("scan: cannot start worker processes (%s); reading every workflow here", exc)
        return None


def _handed_out(
    jobs: list[tuple[dict[str, Any], int | None]], store: RequirementStore, pool: parse_worker.Workers | None
) -> tuple[list[bool], Iterator[tuple[bytes, bytes]]]:
    """Hand the workers every job the store has nothing for (they start reading at once); return which jobs
    the store has, and the workers' answers to come, in order."""
    if pool is None:
        return [], iter(())
    stored = [store.has(base["sha256"]) for base, _size in jobs]
    return stored, pool.map([(base["path"], size) for (base, size), hit in zip(jobs, stored, strict=True) if not hit])


def _in_order(
    jobs: list[tuple[dict[str, Any], int | None]],
    settings: ScanSettings,
    pool: parse_worker.Workers | None,
    handed_out: tuple[list[bool], Iterator[tuple[bytes, bytes]]],
) -> Iterator[Scanned]:
    """Yield the entry of each of ``jobs``, in order: from the store (compared here, in turn), from the
    workers' answers when ``pool`` reads the rest, else read here."""
    global _SETTINGS
    _SETTINGS = settings
    stored, answers = handed_out
    try:
        if pool is None:
            yield from map(scan_one, jobs)
            return
        with pool:
            for job, hit in zip(jobs, stored, strict=True):
                # A stored line found unusable now (torn, edited) is read here instead.
                yield scan_one(job) if hit else _answered(job[0], *next(answers), settings)
    finally:
        _SETTINGS = None  # the indexes are not kept alive past the scan


def settings_hash(scan_config: Mapping[str, Any]) -> str:
    """Return a hash of what changes extraction: the extractor version and the [scan] settings."""
    return artifacts.content_hash({"extractor": EXTRACTOR_VERSION, "scan": scan_config})


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
    """Return a hash of everything scan.json is computed from, bar the cycle id and the clock
    (``artifacts.content_hash`` of the install's and each workflow's)."""
    data = {
        "install": install,
        "workflows": [[w["path"], w["workflow"], w["source"], w["sha256"]] for w in intake["workflows"]],
    }
    try:
        # Strings only (intake.json's schema), which orjson writes byte for byte as content_hash's json.dumps
        # does, in a fifth of the time: this runs every cycle, over every workflow.
        return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    except orjson.JSONEncodeError:
        return artifacts.content_hash(data)


def _as_written(state: Path, recorded: Mapping[str, Any]) -> bool:
    """Return whether scan.json is the file the scan that wrote ``recorded`` (scan_inputs.json) left: same size
    and mtime. One edited, truncated or replaced since (by hand, a restore, a disk fault) is written again, else
    every later cycle would keep it and every stage after the scan would fail on it."""
    wanted = recorded.get("scan_stat")
    return wanted is not None and wanted == stage_inputs.stat_key(state / ARTIFACT)


def _read_inputs(path: Path) -> dict[str, Any] | None:
    try:
        return artifacts.read_optional(path, "scan_inputs")
    except ArtifactError as exc:
        logger.warning("%s; the scan runs in full", exc)
        return None


class Tally:
    """What the stage reports of the entries written, gathered as they go by (the entries are not kept)."""

    __slots__ = (
        "count_inactive", "missing_models", "missing_nodes", "not_workflows", "reused", "unreadable", "workflows",
    )  # fmt: skip

    count_inactive: bool
    workflows: int
    reused: int
    unreadable: list[str]
    not_workflows: list[dict[str, Any]]
    missing_models: set[tuple[str | None, str]]
    missing_nodes: set[str]

    def __init__(
        self,
        count_inactive: bool,
        workflows: int = 0,
        reused: int = 0,
        unreadable: list[str] | None = None,
        not_workflows: list[dict[str, Any]] | None = None,
        missing_models: set[tuple[str | None, str]] | None = None,
        missing_nodes: set[str] | None = None,
    ) -> None:
        self.count_inactive, self.workflows, self.reused = count_inactive, workflows, reused
        self.unreadable = [] if unreadable is None else unreadable
        self.not_workflows = [] if not_workflows is None else not_workflows
        self.missing_models = set() if missing_models is None else missing_models
        self.missing_nodes = set() if missing_nodes is None else missing_nodes

    def __eq__(self, other: object) -> bool:
        """Return whether ``other`` is a Tally of the same values, field by field (the tests compare two)."""
        if type(other) is not Tally:
            return NotImplemented
        return self._compared() == other._compared()

    def _compared(self) -> tuple[Any, ...]:
        return (
            self.count_inactive, self.workflows, self.reused, self.unreadable, self.not_workflows,
            self.missing_models, self.missing_nodes,
        )  # fmt: skip

    def add(self, result: Scanned) -> None:
        """Count one result (a not_workflows entry is kept: the head of scan.json lists them)."""
        if result.not_workflow:
            self.not_workflows.append(orjson.loads(result.text))
            return
        self.workflows += 1
        self.reused += result.reused
        if result.error is not None:
            self.unreadable.append(result.error)
        self.missing_models.update(result.missing_models)
        self.missing_nodes.update(result.missing_nodes)


def run(ctx: StageContext) -> StageOutcome:
    """Scan every workflow listed in ``intake.json``; write ``scan.json``; return the outcome with counts."""
    outcome = StageOutcome("scan")
    state = ctx.state_dir
    intake = artifacts.read(state / "intake.json", "intake", handed_over=True)  # read only, never changed
    scan_config = ctx.config.section("scan")
    wanted_hash = settings_hash(scan_config)
    map_path = manager_map.find_map(ctx.config.comfyui_root)
    url = ctx.config.section("comfyui")["url"]
    # --offline means no network: a server on this machine may still be asked, as the gate does.
    truth = server.fetch(url) if url and (not ctx.config.offline or server.is_loopback(url)) else None
    install = install_fingerprint(state, intake["comfyui_root"], wanted_hash, map_path, truth)
    fingerprint = inputs_fingerprint(install, intake)

    previous_inputs = _read_inputs(state / INPUTS)
    if (
        previous_inputs is not None
        and previous_inputs["fingerprint"] == fingerprint
        and _as_written(state, previous_inputs)
    ):
        outcome.counts = {**previous_inputs["counts"], "parsed": 0, "reused": previous_inputs["counts"]["workflows"]}
        outcome.detail = f"nothing changed since cycle {previous_inputs['cycle_id']}: {previous_inputs['detail']}"
        logger.info("scan: %s", outcome.detail)
        return outcome

    # No reference cycles are made below, only millions of small containers: the cyclic collector would
    # rescan all of them again and again (it doubled the scan's time on a large install).
    with collector.paused():
        tally, written = _scan(ctx, intake, truth, map_path, wanted_hash, previous_inputs, install)
    # A file that cannot be read is a finding of the report (its entry's error), not a failure of the stage:
    # the stage did its job for every other workflow.
    _log_unreadable(tally.unreadable)
    outcome.counts, outcome.detail = _summary(tally, truth)
    artifacts.write(
        state / INPUTS,
        {
            "fingerprint": fingerprint,
            "install": install,
            "scan_sha256": written,
            "scan_stat": stage_inputs.stat_key(state / ARTIFACT),
            "cycle_id": ctx.cycle_id,
            "counts": outcome.counts,
            "errors": tally.unreadable,
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


def _summary(tally: Tally, truth: server.ServerTruth | None) -> tuple[dict[str, int], str]:
    """Return the stage's counts and its one-line detail."""
    parsed = tally.workflows - tally.reused
    unreadable = len(tally.unreadable)
    counts = {
        "workflows": tally.workflows,
        "parsed": parsed,
        "reused": tally.reused,
        "errors": unreadable,
        "not_workflows": len(tally.not_workflows),
        "missing_models": len(tally.missing_models),
        "missing_nodes": len(tally.missing_nodes),
    }
    source = f"checked against the server at {truth.url}" if truth is not None else "checked against the files"
    images = f", {counts['not_workflows']} images without a workflow" if counts["not_workflows"] else ""
    detail = (
        f"{tally.workflows} workflows ({parsed} parsed, {tally.reused} unchanged), {unreadable} unreadable"
        f"{images}; {len(tally.missing_models)} models and {len(tally.missing_nodes)} node types missing; {source}"
    )
    return counts, detail


def _placeholders(scan_config: Mapping[str, Any]) -> frozenset[str]:
    """Return the [scan] placeholder values, as extraction compares them (stripped, case-folded)."""
    return frozenset(v.strip().casefold() for v in scan_config["placeholder_values"])


def _max_bytes(scan_config: Mapping[str, Any]) -> int:
    """Return the largest workflow file read, in bytes ([scan] max_workflow_mb)."""
    return int(float(scan_config.get("max_workflow_mb", 32)) * 1_000_000)


def _scan_settings(
    scan_config: Mapping[str, Any],
    evaluator: Evaluator,
    store: RequirementStore,
    primed: tuple[Callable[[Any], Any], ...] = (),
) -> ScanSettings:
    """Return the ScanSettings the [scan] section ``scan_config`` asks for, checking with ``evaluator``, storing
    what extraction found in ``store`` and taking the ``primed`` parts of each entry."""
    return ScanSettings(
        loaders=extract.loader_table(scan_config["loaders"]),
        placeholders=_placeholders(scan_config),
        evaluator=evaluator,
        store=store,
        count_inactive=bool(scan_config["count_inactive_nodes"]),
        max_bytes=_max_bytes(scan_config),
        config_loaders=scan_config["loaders"],
        primed=primed,
    )


def _scan(
    ctx: StageContext,
    intake: Mapping[str, Any],
    truth: server.ServerTruth | None,
    map_path: Path | None,
    wanted_hash: str,
    previous_inputs: Mapping[str, Any] | None,
    install: str,
) -> tuple[Tally, str]:
    """Write scan.json: every workflow's entry in intake order, each written as soon as it is made (entries
    of unchanged workflows copied from the last scan.json when the install is unchanged, the others made,
    parsed in worker processes when many); return what the stage reports of them and the sha256 written."""
    scan_config = ctx.config.section("scan")
    count_inactive = bool(scan_config["count_inactive_nodes"])
    state = ctx.state_dir
    digests = Recorder(state / ARTIFACT)  # read before scan.json is written again: the last one's digests
    kept = KeptEntries.read(
        state / ARTIFACT, previous_inputs, install, lambda e: counted(e, count_inactive), digests.last
    )
    store = RequirementStore(state / STORE_FILE, wanted_hash)
    tally = Tally(count_inactive)
    record = LinesRecord()
    items = intake["workflows"]
    jobs = [
        ({key: item[key] for key in BASE_KEYS}, item.get("size")) for item in items if kept.get(item["sha256"]) is None
    ]
    pool = None
    primer: scan_parts.Primer | None = None
    try:
        if jobs:
            store.load()
            # Started now, while this process is small (starting a process copies it for an instant), and
            # reading while the caches are read and the indexes built; as many as the files the store lacks call
            # for (none when it has them all: an install that changed compares every workflow anew, from the store).
            to_read = sum(1 for base, _size in jobs if not store.has(base["sha256"]))
            workers = worker_count(int(scan_config.get("workers", 0)), to_read)
            pool = start_workers(workers, scan_config["loaders"], _placeholders(scan_config), _max_bytes(scan_config))
        handed_out = _handed_out(jobs, store, pool)
        files = InstallFiles(state, map_path) if jobs or not kept.head else None
        if files is None or (kept.head and kept.head["node_map"] == (str(map_path) if map_path else None)):
            # The install is the one the last scan compared with (its model cache's very bytes, its node
            # map's): so are these, and the node map need not be read for them.
            head_facts = {key: kept.head[key] for key in ("comfyui_root", "demo", "node_map")}
        else:
            head_facts = {
                "comfyui_root": files.model_cache["comfyui_root"],
                "demo": files.model_cache["demo"],
                "node_map": files.node_map.source,
            }
        # The stages after the scan would read each entry made back from scan.json: they get their parts now.
        primer = _primer(state, len(jobs), kept, digests)
        takes = primer.takes if primer is not None else ()
        made = _made(ctx, jobs, store, truth, files, kept, pool, handed_out, takes) if files and jobs else iter(())
        live = {item["sha256"] for item in items} if jobs else None
        lines = Lines(kept, store, tally, record, digests, primer)
        if len(jobs) < MIN_PARALLEL:
            # Few entries to make: made first and held, the head (which lists the images among them) is known
            # before any entry is written, and scan.json is written once, hashed as it goes.
            made_now = list(made)
            images = [orjson.loads(result.text) for result in made_now if result.not_workflow]
            head = _head(ctx, head_facts, wanted_hash, truth, images)
            with artifacts.HeadFirstWriter(state / ARTIFACT, "workflows", head, SCHEMA) as first:
                lines.write(items, iter(made_now), first)
                if live is not None:
                    store.save(live)
                written = first.finish()
        else:
            with artifacts.AssembledWriter(state / ARTIFACT, "workflows") as writer:
                lines.write(items, made, writer)
                if live is not None:
                    store.save(live)
                head = _head(ctx, head_facts, wanted_hash, truth, tally.not_workflows)
                written = writer.finish(head, SCHEMA)
        # After scan.json and before scan_inputs.json: a record is used only for the bytes both name.
        record.save(state / LINES_FILE, written)
        digests.save(written)
        if digests.report is not None:
            scan_keys.save(state / scan_keys.FILE, digests.report_pairs())
        if primer is not None:
            primer.finish()
            from comfywatchman.stages import verify  # imported by primed_packs

            # verify_part's memo of lookup keys, filled while the parts were taken among the scan's own objects:
            # kept, it stays spread among them for the rest of the process (the cycle peaks ~20 MB higher at 8,000).
            verify.forget_lookup_keys()
    finally:
        if primer is not None:
            primer.close()
        if pool is not None:
            pool.close()  # whatever stopped the scan: no worker outlives it
        kept.close()
        store.close()
    return tally, written


def _primer(state: Path, made: int, kept: KeptEntries, digests: Recorder) -> scan_parts.Primer | None:
    """Return the Primer of a scan that makes ``made`` entries (None for none): the search's and verify's packs,
    and when ``primes_report`` the report's, whose line digests ``digests`` then works out too (those of lines
    copied from the last scan.json from the keys the last report or scan kept)."""
    if not made:
        return None
    packs = primed_packs(state)
    if primes_report(state, made):
        digests.keep_report_keys(scan_keys.load(state / scan_keys.FILE) if kept.head else {})
        packs.append(report_pack(state))
    # The report's pack holds the parts of the last scan that primed it alone.
    return scan_parts.Primer(packs, whole=[catalogue.in_state(state, "report_scan_parts")])


def primed_packs(state: Path) -> list[scan_parts.Pack]:
    """Return the parts packs a scan that makes entries fills (``scan_parts.Primer``): those of the search and
    verify, which read scan.json right after it, each with its stage's own tag and ``take``."""
    # Imported here: a scan that makes no entry (nothing changed) needs neither module.
    from comfywatchman.stages import search, verify

    return [
        (catalogue.in_state(state, "search_parts"), search.PARTS_TAG, search.missing_part),
        (catalogue.in_state(state, "verify_parts"), verify.PARTS_TAG, verify.verify_part),
    ]


def report_pack(state: Path) -> scan_parts.Pack:
    """Return the report's parts pack (``report_scan_parts``), which a scan fills when ``primes_report``."""
    from comfywatchman.reporting import status_report  # as ``primed_packs``'s modules

    return catalogue.in_state(state, "report_scan_parts"), status_report.PARTS_TAG, status_report.scanned_part


def primes_report(state: Path, made: int) -> bool:
    """Return whether a scan that makes ``made`` entries hands the report what it reads of them: each line's
    digest as the report keeps it (``report_scan_keys``) and each entry's part (``report_scan_parts``), so a
    report that works every workflow out reads no line of scan.json. When it makes many (a first scan, a
    changed install), or either file is missing; a report after a few changed reads those lines alone
    (``report.incremental``), where writing both files would cost the scan more than it spares."""
    if made >= MIN_PARALLEL:
        return True
    return not (state / scan_keys.FILE).exists() or not catalogue.in_state(state, "report_scan_parts").exists()


def _head(
    ctx: StageContext,
    facts: Mapping[str, Any],
    wanted_hash: str,
    truth: server.ServerTruth | None,
    not_workflows: list[dict[str, Any]],
) -> dict[str, Any]:
    """Return scan.json's document without its entries: the install ``facts`` (comfyui_root, demo, node_map),
    the settings and server compared with, and the images without a workflow."""
    return {
        "cycle_id": ctx.cycle_id,
        "generated_at": ctx.now().isoformat(timespec="seconds"),
        **facts,
        "settings_hash": wanted_hash,
        "server": truth.url if truth is not None else None,
        "not_workflows": not_workflows,
        "workflows": [],
    }


class _Writer(Protocol):
    def add(self, item: bytes) -> None: ...

    def add_many(self, items: bytes | memoryview, count: int) -> None: ...


class Lines:
    """Writes the entries of scan.json in intake order, noting each in the stage's tally, the lines record and
    the digests record, and what was parsed in the requirement store."""

    __slots__ = ("digests", "kept", "primer", "record", "store", "tally")

    kept: KeptEntries
    store: RequirementStore
    tally: Tally
    record: LinesRecord
    digests: Recorder
    primer: scan_parts.Primer | None  # fills the next stages' parts packs with the entries made

    def __init__(
        self,
        kept: KeptEntries,
        store: RequirementStore,
        tally: Tally,
        record: LinesRecord,
        digests: Recorder,
        primer: scan_parts.Primer | None = None,
    ) -> None:
        self.kept, self.store, self.tally, self.record, self.digests = kept, store, tally, record, digests
        self.primer = primer

    def write(self, items: list[dict[str, Any]], made: Iterator[Scanned], writer: _Writer) -> None:
        """Write the entry of each intake item of ``items`` with ``writer``: its kept line, else the next of
        ``made``. Kept lines that follow each other in the last scan.json, with the same intake fields and the
        same ``reused``, are copied a run at a time (``_copy_run``)."""
        kept = self.kept
        base_of = operator.itemgetter(*BASE_KEYS)  # an intake item's values of BASE_KEYS, as a tuple
        run: list[KeptLine] = []
        run_end = 0  # where the run's last line ends in the last scan.json
        for item in items:
            previous = kept.get(item["sha256"])
            if previous is not None and previous.base == base_of(item):
                if run and (
                    previous.offset != run_end + 2  # not the next line (each line ends with ",\n")
                    or previous.reused != run[0].reused
                    or run_end - run[0].offset > RUN_BYTES
                ):
                    self._copy_run(run, writer)
                    run = []
                run.append(previous)
                run_end = previous.offset + previous.length
                continue
            if run:
                self._copy_run(run, writer)
                run = []
            self._one(item, base_of(item), previous, made, writer)
        if run:
            self._copy_run(run, writer)

    def _one(
        self, item: Mapping[str, Any], base: tuple[Any, ...], previous: KeptLine | None, made: Iterator[Scanned],
        writer: _Writer,
    ) -> None:  # fmt: skip
        """Write the entry of one intake item: its kept line ``previous`` (with the intake fields ``base`` set),
        else the next of ``made``."""
        copied_from = None
        if previous is None:
            result = next(made)
            if result.kept is not None:
                self.store.add(item["sha256"], result.kept)
        else:
            text = self.kept.text(previous, base)
            result = Scanned(text, None, True, previous.missing_models, previous.missing_nodes)
            # The line as it was, or with ``reused`` set: its digest is the last one's.
            copied_from = previous.offset if self.kept.copied else None
        self.tally.add(result)
        if not result.not_workflow:
            writer.add(result.text)
            self.digests.add(result.text, copied_from)
            if self.primer is not None and result.parts is not None:
                self.primer.add(self.digests.digests[-1].encode("ascii"), result.parts)
            counts = (result.missing_models, result.missing_nodes) if result.error is None else None
            self.record.add(result.text, base, result.reused, counts)

    def _copy_run(self, run: list[KeptLine], writer: _Writer) -> None:
        """Write the kept lines ``run`` (one after the other in the last scan.json, their intake fields unchanged,
        all with the same ``reused``) as one block read at once: the bytes ``KeptEntries.text`` gives each
        line, the line as it is or with ``"reused":false`` turned ``true`` (a line where that is not the last
        key before ``"sha256"`` is written alone, as ``text`` encodes it anew)."""
        block = self.kept.block(run[0].offset, run[-1].offset + run[-1].length)
        flip = not run[0].reused
        view = memoryview(block)
        pieces: list[bytes | memoryview] = []  # of the lines copied, since the last one written alone
        count = copied = 0  # lines in ``pieces``; lines copied in all
        start = 0  # where the next piece starts in ``block``
        at = 0  # where the new text of the next copied line starts in the joined pieces
        base = run[0].offset
        tally, add_digest, add_record = self.tally, self.digests.add_copied, self.record.add_length
        missing_models, missing_nodes = tally.missing_models, tally.missing_nodes
        for line in run:
            begin, end = line.offset - base, line.offset - base + line.length
            length = line.length
            if flip:
                found = block.rfind(_NOT_REUSED, begin, end)
                if found < 0 or not block.startswith(_AFTER_NOT_REUSED, found + len(_NOT_REUSED), end):
                    if count:
                        pieces.append(view[start : begin - 2])  # without the comma and newline after it
                        self._add_copied(writer, pieces, count)
                        pieces, count = [], 0
                    self._one({"sha256": line.base[3]}, line.base, line, iter(()), writer)
                    start, at = end + 2, 0
                    continue
                pieces.append(view[start:found])
                pieces.append(_REUSED)
                start = found + len(_NOT_REUSED)
                length -= len(_NOT_REUSED) - len(_REUSED)
            # Counted in the tally and both records (inlined: this runs for every line kept).
            missing_models.update(line.missing_models)
            missing_nodes.update(line.missing_nodes)
            add_digest(at, length, line.offset)
            add_record(length, line.base, True, (line.missing_models, line.missing_nodes))
            at += length + 2
            count += 1
            copied += 1
        if count:
            pieces.append(view[start:] if start else block)
            self._add_copied(writer, pieces, count)
        tally.workflows += copied
        tally.reused += copied

    def _add_copied(self, writer: _Writer, pieces: list[bytes | memoryview], count: int) -> None:
        """Write ``count`` lines copied, whose text is ``pieces`` joined, and hash those the last record
        gave no digest for."""
        text = pieces[0] if len(pieces) == 1 and isinstance(pieces[0], bytes) else b"".join(pieces)
        writer.add_many(text, count)
        self.digests.flush_copied(text)


class InstallFiles:
    """The install's side as the caches and ComfyUI-Manager's node map describe it.

    The caches are read when made (a broken one fails the stage, as before any workflow is compared); the
    node map is read, and the indexes built, only when a verdict needs them (neither can fail: a map that
    cannot be read is an empty one).
    """

    def __init__(self, state: Path, map_path: Path | None) -> None:
        self.map_path = map_path
        self.model_cache: dict[str, Any] = artifacts.read(state / "model_cache.json", "model_cache")
        self.nodes_cache: dict[str, Any] = artifacts.read(state / "custom_nodes_cache.json", "custom_nodes_cache")

    @functools.cached_property
    def node_map(self) -> manager_map.NodeMap:
        """ComfyUI-Manager's node map (empty when there is none)."""
        return manager_map.load(self.map_path)

    def model_index(self) -> ModelIndex:
        """Return the index over the model cache."""
        return inventory.ModelIndex.from_cache(self.model_cache)

    def node_index(self, truth: server.ServerTruth | None) -> NodeIndex:
        """Return the index over the custom node cache and the node map (and the server's answer)."""
        return inventory.NodeIndex.from_cache(self.nodes_cache, self.node_map, server=truth)


def _made(
    ctx: StageContext,
    jobs: list[tuple[dict[str, Any], int | None]],
    store: RequirementStore,
    truth: server.ServerTruth | None,
    files: InstallFiles,
    kept: KeptEntries,
    pool: parse_worker.Workers | None,
    handed_out: tuple[list[bool], Iterator[tuple[bytes, bytes]]],
    primed: tuple[Callable[[Any], Any], ...] = (),
) -> Iterator[Scanned]:
    """Yield the entry of each of ``jobs`` (workflows not kept from the last scan), in order, the workers of
    ``pool`` reading what was ``handed_out`` to them, with the ``primed`` parts of each."""
    scan_config = ctx.config.section("scan")
    evaluator = Evaluator(files.model_index, lambda: files.node_index(truth), truth)
    if kept.lines and len(jobs) < MIN_PARALLEL:
        # A few workflows changed on an unchanged install: what their last versions were found to need is
        # known (the last scan's verdicts, on this very install), and most of it is needed still.
        for base, _size in jobs:
            _seed(evaluator, kept, base["path"])
    settings = _scan_settings(scan_config, evaluator, store, primed)
    made = _in_order(jobs, settings, pool, handed_out)
    yield from progress.track(made, len(jobs), "scan", "workflow")


def _seed(evaluator: Evaluator, kept: KeptEntries, path: str) -> None:
    """Seed ``evaluator`` with the verdicts of the last scan's entry of the workflow at ``path``, if any."""
    try:
        entry = kept.last_entry(path)
        if entry is not None:
            evaluator.seed(entry)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a cache only: the verdicts are made anew
        logger.debug("%s: the last entry seeds nothing (%s)", path, exc)
