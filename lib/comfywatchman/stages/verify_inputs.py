"""What the verify stage's output is made of, and the check that it still stands.

A cycle where nothing changed (same scan, model cache and search answers, every file as it was hashed, nothing
pending) leaves ``verify.json`` as it is after a handful of ``stat`` calls: that check is this module, and the
verify stage's runner. It imports none of the verification itself (variants, names, the scan's parts),
which ``stages.verify`` brings in only when there is something to verify.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, hashing
from comfywatchman.errors import ArtifactError
from comfywatchman.stages import collector
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger("comfywatchman.stages.verify")  # the verify stage's lines, as they always were

ARTIFACT = "verify.json"
INPUTS = "verify_inputs.json"  # what the next cycle needs to tell whether verify.json still stands
FORMAT = 1  # bump when what verify.json holds changes meaning: the next cycle then verifies afresh


def _stat_key(path: Path) -> list[int] | None:
    stat = hashing.stat_of(path)
    return [stat.size, stat.mtime_ns] if stat is not None else None


def fingerprint(state: Path, settings: Mapping[str, Any]) -> str:
    """Return a hash of what verify.json is computed from, bar the files' own stats: scan.json,
    model_cache.json, search.json and the download queue, each rewritten only when its content changes (so
    its size and mtime stand for it), and the settings."""
    return artifacts.content_hash(
        {
            "format": FORMAT,
            "scan": _stat_key(state / "scan.json"),
            "model_cache": _stat_key(state / "model_cache.json"),
            "search": _stat_key(state / "search.json"),
            "queue": _stat_key(state / "download_queue.json"),
            "settings": dict(settings),
        }
    )


def stats_digest(paths: Iterable[str]) -> str:
    """Return a hash of the size and mtime of each of ``paths`` (a missing file counts as such)."""
    return digest_of_stats(paths, {path: hashing.stat_of(path) for path in paths})


def digest_of_stats(paths: Iterable[str], stats: Mapping[str, hashing.Stat | None]) -> str:
    """Return ``stats_digest`` of ``paths`` from their ``stats`` (None: cannot be reached)."""
    # One text hashed at once (the same bytes as a line at a time: a hash of thousands of lines took a call each).
    text = "".join(
        f"{path}\0{st.size}\0{st.mtime_ns}\n" if (st := stats[path]) is not None else f"{path}\0-\n" for path in paths
    )
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def unchanged(state: Path, previous: Mapping[str, Any] | None, wanted: str) -> bool:
    """Return whether the last verify.json stands: same inputs, nothing pending, every file as it was
    (one ``stat`` per file with an expected hash)."""
    if previous is None or previous["fingerprint"] != wanted or previous["files_pending"]:
        return False
    return (state / ARTIFACT).exists() and stats_digest(previous["paths"]) == previous["stats"]


def standing(counts: Mapping[str, int]) -> str:
    """Return the one-line state of the verification from the stage's counts."""
    verified, pending = counts["files_verified"], counts["files_pending"]
    return (
        f"{verified} of {verified + pending} files with a declared hash verified; {counts['drift']} drifted; "
        f"{counts['alternatives']} missing files have a variant on disk"
    )


def check(ctx: StageContext) -> tuple[StageOutcome | None, Mapping[str, Any] | None, str]:
    """Return the outcome of the last verify when verify.json still stands (``unchanged``), else None; with
    the last ``verify_inputs.json`` (None when there is none or it cannot be read) and the fingerprint of
    this cycle's inputs."""
    state = ctx.state_dir
    settings = ctx.config.section("verify")
    count_inactive = bool(ctx.config.section("scan")["count_inactive_nodes"])
    wanted = fingerprint(state, {**settings, "count_inactive": count_inactive})
    try:
        previous = artifacts.read_optional(state / INPUTS, "verify_inputs")
    except ArtifactError as exc:
        logger.warning("%s; verified afresh", exc)
        previous = None
    if not unchanged(state, previous, wanted):
        return None, previous, wanted
    assert previous is not None
    outcome = StageOutcome("verify")
    outcome.counts = dict(previous["counts"], hashed_files=0, hashed_bytes=0)
    outcome.errors = []
    outcome.detail = f"nothing changed since cycle {previous['cycle_id']}: {standing(outcome.counts)}"
    logger.info("verify: %s", outcome.detail)
    return outcome, previous, wanted


def run(ctx: StageContext) -> StageOutcome:
    """Run the verify stage: the last outcome when nothing changed (``check``), else the verification itself
    (``stages.verify``), with the cycle collector paused (``collector.paused``)."""
    with collector.paused():
        kept, previous, wanted = check(ctx)
        if kept is not None:
            return kept
        from comfywatchman.stages import verify

        return verify.verified(ctx, previous, wanted)
