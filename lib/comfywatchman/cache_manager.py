"""The install caches: ``state/model_cache.json`` (model files by folder type) and
``state/custom_nodes_cache.json`` (custom node packs and the node types they register).

Each is rebuilt from disk every cycle and written only when its content changed (the content hash leaves
timestamps out), so an unchanged install leaves both files, and their mtimes, alone. What was read of each
custom node pack is kept in ``state/pack_reads.json`` (see ``comfy.pack_reads``), so an unchanged pack is
not parsed again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, catalogue, fs_names, shared_jobs, walk_ahead
from comfywatchman.comfy import custom_nodes, folders, model_walk, pack_reads
from comfywatchman.comfy.walk_bound import WalkBound, problem_line
from comfywatchman.stages import collector

logger = logging.getLogger(__name__)

VOLATILE = ("generated_at",)


class CacheOutcome:
    """What a refresh did: the data and whether each file was rewritten."""

    # A plain class, not a frozen dataclass: making a dataclass costs a cycle's process ~0.4 ms (Python 3.11).
    # Nothing assigns to one once made, and none is hashed (its dicts are not hashable).
    __slots__ = ("findings", "model_cache", "models_written", "nodes_cache", "nodes_written")

    model_cache: dict[str, Any]
    nodes_cache: dict[str, Any]
    models_written: bool
    nodes_written: bool
    #: One line per file or folder left out of the caches (its name is not UTF-8 text): the stage's findings.
    findings: list[str]

    def __init__(
        self,
        model_cache: dict[str, Any],
        nodes_cache: dict[str, Any],
        models_written: bool,
        nodes_written: bool,
        findings: list[str] | None = None,
    ) -> None:
        self.model_cache, self.nodes_cache = model_cache, nodes_cache
        self.models_written, self.nodes_written = models_written, nodes_written
        self.findings = [] if findings is None else findings


# Bounds of one model folder's walk when none are given ([comfyui] model_walk_max_depth / _entries).
DEFAULT_BOUNDS = (12, 50_000)


def scan_model_files(
    paths: folders.ModelPaths,
    bounds: tuple[int, int] = DEFAULT_BOUNDS,
    limits: list[dict[str, Any]] | None = None,
    undecodable: list[str] | None = None,
    plan_file: Path | None = None,
) -> dict[str, Any]:
    """Return ``{folder type: {paths, files: [{name, dir, size}]}}`` for every directory in ``paths``.

    ``name`` is relative to its directory with ``/`` separators; ``dir`` indexes ``paths``. Symlinked folders
    are followed (ComfyUI follows them) but a loop is walked once. Each directory's walk stays within
    ``bounds`` (max depth, max entries); one cut short adds its finding (``WalkBound.finding``) to ``limits``.
    A file or folder whose name is not UTF-8 text is left out and its path added to ``undecodable``.
    The directories are walked by the child this process began at its start when it walked exactly these
    (``walk_ahead``), else by this process and, where a second core may help, a forked child (``shared_jobs``):
    the result is the same. With ``plan_file``, what was walked is kept there for the next cycle's walk ahead.
    """
    jobs = [(folder, directory) for folder, dirs in sorted(paths.folders.items()) for directory in dirs]
    plan: walk_ahead.Plan = [
        [folder, str(directory), sorted(folders.suffixes_of(folder)), *bounds] for folder, directory in jobs
    ]
    ahead = walk_ahead.take(plan)
    if ahead is not None:
        logger.debug("the model folders were walked as this cycle's process started")
        done = dict(enumerate(ahead))
    else:
        done = shared_jobs.run_shared(_largest_first(jobs), lambda number: model_walk.walk(*plan[number]))
    if plan_file is not None:
        try:
            walk_ahead.keep_plan(plan_file, plan)
        except OSError as exc:  # the next cycle walks after its gate, as a first cycle does
            logger.debug("the plan of the model walk not kept in %s: %s", plan_file, exc)
    result: dict[str, Any] = {}
    number = 0
    for folder, dirs in sorted(paths.folders.items()):
        files: list[dict[str, Any]] = []
        for index, directory in enumerate(dirs):
            found, reason, entries, skipped = done[number]
            number += 1
            if undecodable is not None:
                undecodable += skipped
            files += [{"name": name, "dir": index, "size": size} for name, size in found]
            if reason is not None and limits is not None:
                bound = WalkBound(*bounds, entries=entries, reason=reason)
                limits.append(bound.finding(folder, str(directory), paths.declared_by.get(directory)))
        result[folder] = {"paths": [str(d) for d in dirs], "files": files}
    return result


# The folder types that hold most model files in a usual install, largest first: walked first, so that what
# is left when one process runs out of directories is small, and neither waits long for the other.
_USUALLY_LARGEST = ("loras", "checkpoints", "embeddings", "controlnet", "diffusion_models", "upscale_models")


def _largest_first(jobs: list[tuple[str, Path]]) -> list[int]:
    """Return the numbers of ``jobs`` (folder type, directory) in the order they are walked."""
    rank = {folder: place for place, folder in enumerate(_USUALLY_LARGEST)}
    return sorted(range(len(jobs)), key=lambda number: (rank.get(jobs[number][0], len(rank)), number))


def build_model_cache(
    root: Path,
    extra_configs: list[Path],
    demo: bool,
    now: datetime,
    bounds: tuple[int, int] = DEFAULT_BOUNDS,
    undecodable: list[str] | None = None,
    plan_file: Path | None = None,
) -> dict[str, Any]:
    """Return the model cache document for the install at ``root`` (each folder walked within ``bounds``; the
    paths of files and folders left out because their name is not UTF-8 text go to ``undecodable``; what was
    walked kept in ``plan_file`` when given: ``scan_model_files``)."""
    paths = folders.model_paths(root, extra_configs)
    limits: list[dict[str, Any]] = []
    grouped = scan_model_files(paths, bounds, limits, undecodable, plan_file)
    paths.problems.extend(problem_line(finding) for finding in limits)
    # Not logged here: the cache stage makes each problem an error of its outcome, which logs it once.
    return {
        "comfyui_root": str(root),
        "demo": demo,
        "generated_at": now.isoformat(timespec="seconds"),
        "extra_model_paths": paths.sources,
        "problems": paths.problems,
        "walk_limits": limits,
        "file_count": sum(len(g["files"]) for g in grouped.values()),
        "folders": grouped,
    }


def build_nodes_cache(
    root: Path, now: datetime, kept: pack_reads.PackReads | None = None, undecodable: list[str] | None = None
) -> dict[str, Any]:
    """Return the custom nodes cache document for the install at ``root`` (unchanged packs taken from
    ``kept`` when given: the document is the same either way; packs left out because their name is not UTF-8
    text go to ``undecodable``)."""
    packs = custom_nodes.list_packs(root / "custom_nodes", kept, undecodable)
    for pack in packs:
        for problem in pack.problems:
            logger.warning("%s", problem)
    return {
        "comfyui_root": str(root),
        "generated_at": now.isoformat(timespec="seconds"),
        "packs": [p.to_json() for p in packs],
    }


def refresh(
    root: Path,
    state_dir: Path,
    now: datetime,
    extra_configs: list[Path] | None = None,
    demo: bool = False,
    bounds: tuple[int, int] = DEFAULT_BOUNDS,
) -> CacheOutcome:
    """Rebuild both caches for ``root`` and write each to ``state_dir`` only if its content changed (model
    folders walked within ``bounds``: max depth, max entries). Packs unchanged since the last cycle take what
    was read of them then (``state/pack_reads.json``)."""
    # One small dict per model file (tens of thousands), none in a reference cycle: the cycle collector would
    # walk them again and again for nothing while they are made.
    undecodable: list[str] = []
    with collector.paused():
        plan_file = catalogue.in_state(state_dir, "model_walk_plan")
        model_cache = build_model_cache(root, extra_configs or [], demo, now, bounds, undecodable, plan_file)
    kept = pack_reads.PackReads(catalogue.in_state(state_dir, "pack_reads")).load()
    nodes_cache = build_nodes_cache(root, now, kept, undecodable)
    kept.save()
    # Compact: the model cache lists every model file (megabytes on a large install), for programs only.
    models_written = artifacts.write_if_changed(
        state_dir / "model_cache.json", model_cache, "model_cache", volatile=VOLATILE, indent=None
    )
    nodes_written = artifacts.write_if_changed(
        state_dir / "custom_nodes_cache.json", nodes_cache, "custom_nodes_cache", volatile=VOLATILE
    )
    findings = [fs_names.finding(path) for path in undecodable]
    return CacheOutcome(model_cache, nodes_cache, models_written, nodes_written, findings)
