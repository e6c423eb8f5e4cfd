"""The install caches: ``state/model_cache.json`` (model files by folder type) and
``state/custom_nodes_cache.json`` (custom node packs and the node types they register).

Each is rebuilt from disk every cycle and written only when its content changed (the content hash leaves
timestamps out), so an unchanged install leaves both files, and their mtimes, alone. What was read of each
custom node pack is kept in ``state/pack_reads.json`` (see ``comfy.pack_reads``), so an unchanged pack is
not parsed again.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, catalogue, fs_names, shared_jobs
from comfywatchman.comfy import custom_nodes, folders, pack_reads
from comfywatchman.comfy.walk_bound import WalkBound, problem_line
from comfywatchman.stages import collector

logger = logging.getLogger(__name__)

VOLATILE = ("generated_at",)


@dataclass(frozen=True)
class CacheOutcome:
    """What a refresh did: the data and whether each file was rewritten."""

    model_cache: dict[str, Any]
    nodes_cache: dict[str, Any]
    models_written: bool
    nodes_written: bool
    #: One line per file or folder left out of the caches (its name is not UTF-8 text): the stage's findings.
    findings: list[str] = field(default_factory=list)


# Bounds of one model folder's walk when none are given ([comfyui] model_walk_max_depth / _entries).
DEFAULT_BOUNDS = (12, 50_000)


def scan_model_files(
    paths: folders.ModelPaths,
    bounds: tuple[int, int] = DEFAULT_BOUNDS,
    limits: list[dict[str, Any]] | None = None,
    undecodable: list[str] | None = None,
) -> dict[str, Any]:
    """Return ``{folder type: {paths, files: [{name, dir, size}]}}`` for every directory in ``paths``.

    ``name`` is relative to its directory with ``/`` separators; ``dir`` indexes ``paths``. Symlinked folders
    are followed (ComfyUI follows them) but a loop is walked once. Each directory's walk stays within
    ``bounds`` (max depth, max entries); one cut short adds its finding (``WalkBound.finding``) to ``limits``.
    A file or folder whose name is not UTF-8 text is left out and its path added to ``undecodable``.
    The directories are walked by this process and, where a second core may help, a forked child
    (``shared_jobs``): the result is the same.
    """
    jobs = [(folder, directory) for folder, dirs in sorted(paths.folders.items()) for directory in dirs]

    def walk(number: int) -> tuple[list[tuple[str, int]], dict[str, Any] | None, list[str]]:
        folder, directory = jobs[number]
        skipped: list[str] = []
        if folder == "diffusers":
            return _diffusers_entries(directory, skipped), None, skipped
        bound = WalkBound(*bounds)
        found = _walk_pairs(directory, folder, bound, skipped)
        finding = bound.finding(folder, str(directory), paths.declared_by.get(directory)) if bound.reason else None
        return found, finding, skipped

    done = shared_jobs.run_shared(_largest_first(jobs), walk)
    result: dict[str, Any] = {}
    number = 0
    for folder, dirs in sorted(paths.folders.items()):
        files: list[dict[str, Any]] = []
        for index in range(len(dirs)):
            found, finding, skipped = done[number]
            number += 1
            if undecodable is not None:
                undecodable += skipped
            files += [{"name": name, "dir": index, "size": size} for name, size in found]
            if finding is not None and limits is not None:
                limits.append(finding)
        result[folder] = {"paths": [str(d) for d in dirs], "files": files}
    return result


# The folder types that hold most model files in a usual install, largest first: walked first, so that what
# is left when one process runs out of directories is small, and neither waits long for the other.
_USUALLY_LARGEST = ("loras", "checkpoints", "embeddings", "controlnet", "diffusion_models", "upscale_models")


def _largest_first(jobs: list[tuple[str, Path]]) -> list[int]:
    """Return the numbers of ``jobs`` (folder type, directory) in the order they are walked."""
    rank = {folder: place for place, folder in enumerate(_USUALLY_LARGEST)}
    return sorted(range(len(jobs)), key=lambda number: (rank.get(jobs[number][0], len(rank)), number))


# Listing a folder by an open descriptor lets each file's stat resolve its name from that folder (fstatat)
# rather than walking the whole path again: a tenth less time over tens of thousands of files. Not on Windows.
_BY_DESCRIPTOR = os.scandir in os.supports_fd
_FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


def _walk_pairs(
    directory: Path, folder: str, bound: WalkBound | None = None, skipped: list[str] | None = None
) -> list[tuple[str, int]]:
    """Return the model files under ``directory`` as ``(name, size)``, sorted by name, each folder listed once
    (symlink loops), within ``bound``; files and folders whose name is not UTF-8 text are left out, their paths
    added to ``skipped``."""
    skipped = [] if skipped is None else skipped
    # (name, size) pairs, made into dicts by the caller (a child process sends them as they are): names are
    # unique within one walk (each folder is listed once), so sorting the pairs sorts by name alone.
    found: list[tuple[str, int]] = []
    suffixes = folders.suffixes_of(folder)
    seen: set[tuple[int, int]] = set()
    stack = [(str(directory), "")]
    while stack:
        if bound is not None and not bound.room_for_more():
            break
        current, prefix = stack.pop()
        try:
            fd = os.open(current, _FOLDER_FLAGS) if _BY_DESCRIPTOR else None
        except OSError:
            continue
        try:
            stat = os.stat(current) if fd is None else os.fstat(fd)
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                continue
            seen.add(key)
            with os.scandir(current if fd is None else fd) as it:
                entries = list(it)
            if bound is not None:
                entries = bound.admit(entries)
            # The sizes are read while the folder is open: an entry listed by descriptor stats through it.
            _add_files(entries, current, prefix, suffixes, bound, stack, found, skipped)
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    found.sort()
    return found


def _add_files(
    entries: list[os.DirEntry[Any]],
    current: str,
    prefix: str,
    suffixes: frozenset[str],
    bound: WalkBound | None,
    stack: list[tuple[str, str]],
    found: list[tuple[str, int]],
    skipped: list[str],
) -> None:
    # This runs once per file of the install (tens of thousands): the loop does no more than it must, and
    # the one system call per model file is the stat that gives its size.
    append = found.append
    parent = current if current.endswith(os.sep) else current + os.sep
    for entry in entries:
        name = entry.name
        if not name.isascii() and not fs_names.is_text(name):  # isascii first: no call for nearly every name
            skipped.append(parent + name)  # no artifact can hold it: reported, left out
            continue
        try:
            if entry.is_dir():
                if name[:1] != "." and (bound is None or bound.may_enter(prefix + name)):
                    stack.append((parent + name, f"{prefix}{name}/"))
                continue
            dot = name.rfind(".")
            if dot > 0 and name[dot:].lower() in suffixes:
                append((prefix + name, entry.stat().st_size))
        except OSError:
            continue  # a broken symlink is not a model file


def _diffusers_entries(directory: Path, skipped: list[str] | None = None) -> list[tuple[str, int]]:
    """Return the diffusers models under ``directory`` (each folder with a ``model_index.json``) as
    ``(name, 0)``, sorted by name; folders whose name is not UTF-8 text are left out, added to ``skipped``."""
    out = []
    for root, dirs, names in folders.walk_once(directory):  # two symlink loops made os.walk run on forever
        if not all(map(fs_names.is_text, dirs)):
            if skipped is not None:
                skipped += [os.path.join(root, d) for d in dirs if not fs_names.is_text(d)]
            dirs[:] = [d for d in dirs if fs_names.is_text(d)]
        if "model_index.json" in names:
            out.append((os.path.relpath(root, directory).replace(os.sep, "/"), 0))
            dirs[:] = []
    return sorted(out)


def build_model_cache(
    root: Path,
    extra_configs: list[Path],
    demo: bool,
    now: datetime,
    bounds: tuple[int, int] = DEFAULT_BOUNDS,
    undecodable: list[str] | None = None,
) -> dict[str, Any]:
    """Return the model cache document for the install at ``root`` (each folder walked within ``bounds``; the
    paths of files and folders left out because their name is not UTF-8 text go to ``undecodable``)."""
    paths = folders.model_paths(root, extra_configs)
    limits: list[dict[str, Any]] = []
    grouped = scan_model_files(paths, bounds, limits, undecodable)
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
        model_cache = build_model_cache(root, extra_configs or [], demo, now, bounds, undecodable)
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
