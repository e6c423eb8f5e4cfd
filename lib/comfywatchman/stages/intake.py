"""Intake: find every workflow file in the configured sources and acknowledge new or changed ones.

A file is acknowledged (one line appended to ``state/intake_log.jsonl``) when its content hash is new for its
path; an unchanged file never is again. ``state/intake.json`` lists every workflow of this cycle for the
scan, with its hash; a file whose size and mtime did not change is not read again to hash it.

A folder that held workflows last cycle and cannot be listed now (gone with an unmounted drive, or
unreadable) is *unavailable* (see :mod:`comfywatchman.availability`): its workflows are kept as they
were, neither scanned nor counted as removed, so nothing is acknowledged again once it is back.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import artifacts, availability, fs_names
from comfywatchman.comfy.folders import walk_once
from comfywatchman.config import expand_path
from comfywatchman.errors import ArtifactError
from comfywatchman.hashing import file_sha256 as sha256_file  # a pipe or a device is refused, not waited on
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger(__name__)

ARTIFACT = "intake.json"
LOG = "intake_log.jsonl"
DEFAULT_INCLUDE = ("*.json",)
# Files hashed by a few threads (hashlib and file reads release the GIL) once there are this many to hash: a
# first cycle reads every workflow (hundreds of megabytes at 8,000); a warm one hashes none or a few, serially.
HASH_THREADS = 4
MIN_PARALLEL_HASHES = 16


# A NamedTuple, not a frozen dataclass: every cycle's process makes this class, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class Found(NamedTuple):
    """A workflow file found in a source: ``file`` is its path as text (there are thousands, and a Path costs
    per file), ``path`` the same as a Path."""

    source: str
    file: str
    relative: str

    @property
    def path(self) -> Path:
        """Return the file's path as a Path."""
        return Path(self.file)


def source_dirs(patterns: list[str], comfyui_root: Path, home: Path) -> list[Path]:
    """Return the existing folders the path patterns of one source name, in order, each once."""
    dirs: list[Path] = []
    for pattern in patterns:
        expanded = expand_path(pattern, os.environ, home, comfyui_root)
        text = str(expanded)
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        for match in matches:
            path = Path(match)
            if path.is_dir() and path not in dirs:
                dirs.append(path)
    return dirs


def find_workflows(
    ctx: StageContext, listing: availability.Listing | None = None
) -> tuple[list[Found], list[dict[str, Any]]]:
    """Return the workflow files of every source (first source wins a file) and a summary per source.

    Folders that could not be listed, and the folders each source's patterns matched, go to ``listing``.
    """
    config = ctx.config
    listing = listing if listing is not None else availability.Listing()
    found: list[Found] = []
    seen: set[str] = set()
    summaries = []
    for name, source in config.section("intake")["sources"].items():
        dirs = source_dirs(source["paths"], config.comfyui_root, config.home)
        listing.matched[name] = dirs
        include = tuple(p.lower() for p in source.get("include", DEFAULT_INCLUDE))
        base = Path(os.path.commonpath(dirs)) if len(dirs) > 1 else (dirs[0] if dirs else None)
        relative = _relative_to(base)
        count = 0
        for directory in dirs:
            for path in _walk(directory, include, listing.failed, listing.undecodable):
                if path in seen:
                    continue
                seen.add(path)
                found.append(Found(name, path, relative(path)))
                count += 1
        if not dirs:
            logger.info("intake: source %r: no folder matches %s", name, ", ".join(source["paths"]))
        summaries.append({"name": name, "folders": [str(d) for d in dirs], "files": count})
    return found, summaries


def _relative_to(base: Path | None) -> Callable[[str], str]:
    """Return a function giving a found file's path relative to ``base`` with ``/`` separators (the file name
    alone without a base), as ``Path.relative_to(base).as_posix()`` would, on text."""
    if base is None:
        return os.path.basename
    prefix = os.path.join(str(base), "")  # ends in one separator, "/" included
    if os.sep == "/":
        return lambda path: path[len(prefix) :]
    return lambda path: path[len(prefix) :].replace(os.sep, "/")


def _walk(
    directory: Path,
    include: tuple[str, ...],
    failed: dict[Path, str] | None = None,
    undecodable: list[str] | None = None,
) -> Iterator[str]:
    """Yield the paths of the matching files below ``directory`` (as ``str(Path(folder) / name)``); folders
    that cannot be listed go to ``failed``, matching files and folders whose name is not UTF-8 text (which no
    artifact can hold) to ``undecodable``."""

    def unreadable(error: OSError) -> None:
        if failed is not None:
            failed[Path(error.filename or directory)] = error.strerror or str(error)

    # One regex for all the patterns (what fnmatch.fnmatchcase compiles each of them to), matched once per file.
    matches = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in include)).match if include else None
    for folder, dirs, files in walk_once(directory, onerror=unreadable):  # symlinks followed, a loop walked once
        prefix = os.path.join(folder, "")  # what os.path.join(folder, name) starts with
        odd = [d for d in dirs if not fs_names.is_text(d)]
        if odd and undecodable is not None:
            undecodable += [prefix + d for d in odd if not d.startswith(".")]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in odd)
        for name in sorted(files):
            if not name.startswith(".") and matches is not None and matches(name.lower()):
                if not fs_names.is_text(name):
                    if undecodable is not None:
                        undecodable.append(prefix + name)
                    continue
                yield prefix + name


def _previous(ctx: StageContext) -> tuple[dict[str, dict[str, Any]], int, dict[str, list[str]]]:
    """Return what the last intake knew per path (kept workflows of unavailable folders included), how much
    of the log it had seen, and the folders each source matched."""
    try:
        document = artifacts.read_optional(ctx.state_dir / ARTIFACT, "intake")
    except ArtifactError as exc:
        logger.warning("%s; rebuilding what is acknowledged from %s", exc, LOG)
        document = None
    if document is None:
        return {}, 0, {}
    known = {w["path"]: w for w in [*document.get("kept", []), *document["workflows"]]}
    folders = availability.previous_folders(document)
    return known, int(document["log_size"]), folders


def _acknowledged_since(log_path: Path, offset: int) -> dict[str, str]:
    """Return path -> last acknowledged sha256 from the log's records after byte ``offset``."""
    acked: dict[str, str] = {}
    try:
        size = log_path.stat().st_size
    except FileNotFoundError:
        return acked
    if offset > size:
        offset = 0  # the log was replaced or truncated: trust it from the start
    if offset == size:
        return acked
    for record in artifacts.read_jsonl(log_path, "intake_log_entry", offset):
        acked[record["path"]] = record["sha256"]
    return acked


def _unchanged_digest(stat: os.stat_result, before: dict[str, Any]) -> str | None:
    """Return the last cycle's sha256 of a workflow file (``before``: its entry then) while its size and
    modification time are the same; None when it must be read anew."""
    if before and before["size"] == stat.st_size and before["mtime_ns"] == stat.st_mtime_ns:
        return str(before["sha256"])
    return None


def _hash_or_error(path: str) -> str | OSError:
    """Return the sha256 of the file at ``path``, or the OSError reading it raised."""
    try:
        return sha256_file(path)
    except OSError as exc:
        return exc


def _digests(paths: list[str]) -> list[str | OSError]:
    """Return the sha256 of each file of ``paths`` (or the OSError reading it raised), in order."""
    workers = min(HASH_THREADS, os.cpu_count() or 1)
    if len(paths) < MIN_PARALLEL_HASHES or workers < 2:
        return [_hash_or_error(path) for path in paths]
    # One task per thread, each a share of the files (every workers-th one, so large and small files mix
    # alike): a task per file cost more in futures and wake-ups than hashing a small workflow does.
    shares = [paths[start::workers] for start in range(workers)]
    # Imported here: a warm cycle hashes no file, and the pool's modules cost it milliseconds to import.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers, thread_name_prefix="intake-hash") as pool:
        hashed = list(pool.map(_hash_all, shares))
    digests: list[str | OSError] = [""] * len(paths)
    for start, share in enumerate(hashed):
        digests[start::workers] = share
    return digests


def _hash_all(paths: list[str]) -> list[str | OSError]:
    """Return what ``_hash_or_error`` gives for each of ``paths``, in order."""
    return [_hash_or_error(path) for path in paths]


def _stat_and_digest(
    found: list[Found], previous: dict[str, dict[str, Any]]
) -> list[tuple[Found, os.stat_result | None, str | OSError]]:
    """Return, in the order of ``found``, each file's stat and sha256 (the last cycle's while its size and
    mtime are unchanged, else read anew); the OSError that stat or read raised in place of the sha256 (and
    no stat when stat raised it)."""
    known: list[tuple[os.stat_result | None, str | OSError | None]] = []  # None: to be hashed
    to_hash: list[str] = []
    for item in found:
        try:
            stat = os.stat(item.file)
        except OSError as exc:
            known.append((None, exc))
            continue
        digest = _unchanged_digest(stat, previous.get(item.file, {}))
        known.append((stat, digest))
        if digest is None:
            to_hash.append(item.file)
    hashed = iter(_digests(to_hash))
    return [
        (item, stat, next(hashed) if digest is None else digest)
        for item, (stat, digest) in zip(found, known, strict=True)
    ]


def _kind(acknowledged: str | None, digest: str) -> str:
    """Return ``"new"`` (never acknowledged), ``"changed"`` (another digest acknowledged) or ``"unchanged"``."""
    if acknowledged is None:
        return "new"
    return "changed" if acknowledged != digest else "unchanged"


def _workflow_entry(
    item: Found, digest: str, stat: os.stat_result, kind: str, before: dict[str, Any], stamp: str
) -> dict[str, Any]:
    """Return the ``intake.json`` entry of the workflow ``item`` (``before``: its entry of the last cycle, or {})."""
    return {
        "source": item.source,
        "workflow": item.relative,
        "path": item.file,
        "sha256": digest,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "kind": kind,
        "first_seen_at": before.get("first_seen_at", stamp),
        "acknowledged_at": stamp if kind != "unchanged" else before.get("acknowledged_at", stamp),
    }


def _summarize(
    outcome: StageOutcome,
    workflows: int,
    acknowledgments: list[dict[str, Any]],
    removed: int,
    kept: int,
    unavailable: int,
) -> None:
    """Set the counts and the one-line detail of the intake ``outcome``."""
    new = sum(1 for a in acknowledgments if a["kind"] == "new")
    outcome.counts = {"workflows": workflows, "new": new, "changed": len(acknowledgments) - new, "removed": removed}
    if unavailable:
        outcome.counts.update(unavailable=unavailable, kept=kept)
    outcome.detail = f"{workflows} workflows; {new} new, {len(acknowledgments) - new} changed, {removed} removed" + (
        f"; {kept} kept from {unavailable} unavailable folders" if unavailable else ""
    )


def _log_unreadable(findings: list[str]) -> None:
    """Log each workflow file that could not be read at INFO and one line for all of them at WARNING (cron sees
    one line a cycle, not one per file)."""
    for finding in findings:
        logger.info("%s", finding)
    if findings:
        more = f" and {len(findings) - 1} more (listed in the report)" if len(findings) > 1 else ""
        logger.warning("intake: cannot read %s%s", findings[0], more)


def run(ctx: StageContext) -> StageOutcome:
    """Find every workflow, acknowledge new and changed ones, write ``intake.json``; return the outcome."""
    outcome = StageOutcome("intake")
    now = ctx.now()
    stamp = now.isoformat(timespec="seconds")
    log_path = ctx.state_dir / LOG
    previous, log_size, previous_folders = _previous(ctx)
    acked = {path: w["sha256"] for path, w in previous.items()}
    acked.update(_acknowledged_since(log_path, log_size))

    listing = availability.Listing()
    found, summaries = find_workflows(ctx, listing)
    for path in listing.undecodable:  # one file's name: a finding of the report, the others acknowledged as usual
        outcome.finding(fs_names.finding(path))
    workflows: list[dict[str, Any]] = []
    acknowledgments: list[dict[str, Any]] = []
    unreadable_files: set[str] = set()
    for item, stat, digest in _stat_and_digest(found, previous):
        key = item.file
        before = previous.get(key, {})
        if isinstance(digest, OSError):
            # One file's problem, not the stage's: every other workflow is acknowledged as usual.
            outcome.finding(f"{item.file}: unreadable: {digest.strerror or digest}")
            unreadable_files.add(key)  # kept as it was, like a file of an unavailable folder
            continue
        assert stat is not None  # a file that could not be stat-ed has its OSError as its digest
        kind = _kind(acked.get(key), digest)
        if kind != "unchanged":
            acknowledgments.append({"ts": stamp, "source": item.source, "path": key, "sha256": digest, "kind": kind})
        workflows.append(_workflow_entry(item, digest, stat, kind, before, stamp))
    # The log is the record of acknowledgment: append first, so a cycle killed before intake.json is written
    # finds these entries past log_size next time and does not acknowledge them twice.
    artifacts.append_jsonl(log_path, acknowledgments, "intake_log_entry")
    current_paths = {w["path"] for w in workflows}
    gone = [p for p in previous if p not in current_paths]
    unavailable = availability.unavailable_folders(ctx.config, listing, previous_folders)
    kept_paths = availability.kept_paths(gone, unavailable, unreadable_files)
    removed = sorted(p for p in gone if p not in kept_paths)
    kept = [previous[p] for p in sorted(kept_paths)]
    for entry in availability.describe(unavailable, kept_paths):
        outcome.fail(availability.message(entry))
    document = {
        "cycle_id": ctx.cycle_id,
        "generated_at": stamp,
        "comfyui_root": str(ctx.config.comfyui_root),
        "sources": summaries,
        "workflows": workflows,
        "removed": removed,
        "log_size": log_path.stat().st_size if log_path.exists() else 0,
        "errors": [*outcome.errors, *outcome.findings],
        "unavailable": availability.describe(unavailable, kept_paths),
        "kept": kept,
    }
    # Compact: one entry per workflow file (a megabyte for a few thousand), read by the scan every cycle; handed
    # over to a scan run by this process (nothing changes the document after this).
    artifacts.write(ctx.state_dir / ARTIFACT, document, "intake", indent=None, hand_over=True)
    _summarize(outcome, len(workflows), acknowledgments, len(removed), len(kept), len(unavailable))
    if outcome.findings:
        outcome.counts["unreadable"] = len(outcome.findings)
        known = len(unreadable_files & kept_paths)
        outcome.detail += f"; {len(outcome.findings)} unreadable ({known} seen before, kept as they were)"
    _log_unreadable(outcome.findings)
    logger.info("intake: %s", outcome.detail)
    return outcome
