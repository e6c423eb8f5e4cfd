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

from comfywatchman import artifacts, file_identity, hashing
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


def fingerprint(state: Path, settings: Mapping[str, Any], basis: str) -> str:
    """Return a hash of what verify.json is computed from, bar the files' own stats: scan.json and
    model_cache.json, each rewritten only when its content changes (so its size and mtime stand for it), what
    the verify reads of the search's files (``basis``: ``search_files``), and the settings."""
    return artifacts.content_hash(
        {
            "format": FORMAT,
            "scan": _stat_key(state / "scan.json"),
            "model_cache": _stat_key(state / "model_cache.json"),
            "search": basis,
            "settings": dict(settings),
        }
    )


# The search's files the verify reads (``search_basis``), in the order ``search_files`` keeps their identities.
SEARCH_FILES = ("search.json", "download_queue.json")


def search_files(state: Path, known: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the identity of each of the search's files (``file_identity``) and their ``search_basis``: the
    basis ``known`` gives (what the last ``verify_inputs.json`` kept) while both files are the very ones it was
    made from, else made anew. A warm cycle thus tells the verify's inputs unchanged by two ``stat`` calls, not
    by reading search.json (megabytes)."""
    # Taken before the basis is read: a file replaced in between is kept with an identity it no longer has,
    # so the next cycle makes the basis anew rather than take one that is not the file's.
    identity = [file_identity.of(state / name) for name in SEARCH_FILES]
    if known is not None and known.get("identity") == identity and isinstance(known.get("basis"), str):
        return {"identity": identity, "basis": known["basis"]}
    return {"identity": identity, "basis": search_basis(state)}


# How search.json writes a FOUND answer's status (compact JSON, one result a line): the verify reads those lines.
FOUND_MARK = b'"status":"FOUND"'


def search_basis(state: Path) -> str:
    """Return a hash of what the verify reads of the search's files: the lines of ``search.json`` that can
    hold a FOUND answer (the whole file when it is not written one result a line) and the tasks of
    ``download_queue.json``.
    A search that rewrote them with other answers, none of them FOUND (a new missing file NOT_SEARCHED),
    leaves it as it was: so a verify made before that search stands after it (``side_by_side.run_beside``)."""
    digest = hashlib.sha256()
    for name in ("search.json", "download_queue.json"):
        try:
            data = (state / name).read_bytes()
        except FileNotFoundError:
            digest.update(b"%s missing\0" % name.encode())
            continue
        except OSError as exc:  # unreadable: never the basis of a readable one; the verify says why
            digest.update(b"%s unreadable %d\0" % (name.encode(), exc.errno or 0))
            continue
        if name == "download_queue.json":
            # Its tasks, not the cycle id and time of its head, written before them (sorted keys): a queue
            # written again with the same tasks is the same to the verify.
            tasks = data.find(b'"tasks":')
            digest.update(b"queue tasks\0" if tasks >= 0 else b"queue whole\0")
            digest.update(data[max(tasks, 0) :])
            continue
        first = data.find(b"\n")
        if first < 0 or not data.endswith(b'"results":[', 0, first):
            digest.update(b"search.json whole\0")
            digest.update(data)
            continue
        digest.update(b"search.json found lines\0")
        at = data.find(FOUND_MARK, first)
        while at >= 0:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end
            digest.update(data[start:end].removesuffix(b","))  # the last line has no comma after it
            digest.update(b"\n")
            at = data.find(FOUND_MARK, end)
    return digest.hexdigest()


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


def check(
    ctx: StageContext,
) -> tuple[StageOutcome | None, Mapping[str, Any] | None, str, dict[str, Any]]:
    """Return the outcome of the last verify when verify.json still stands (``unchanged``), else None; with
    the last ``verify_inputs.json`` (None when there is none or it cannot be read), the fingerprint of this
    cycle's inputs, and the search's files it was made with (``search_files``)."""
    state = ctx.state_dir
    settings = ctx.config.section("verify")
    count_inactive = bool(ctx.config.section("scan")["count_inactive_nodes"])
    try:
        previous = artifacts.read_optional(state / INPUTS, "verify_inputs")
    except ArtifactError as exc:
        logger.warning("%s; verified afresh", exc)
        previous = None
    searched = search_files(state, previous.get("search_files") if previous is not None else None)
    wanted = fingerprint(state, {**settings, "count_inactive": count_inactive}, searched["basis"])
    if not unchanged(state, previous, wanted):
        return None, previous, wanted, searched
    assert previous is not None
    outcome = StageOutcome("verify")
    outcome.counts = dict(previous["counts"], hashed_files=0, hashed_bytes=0)
    outcome.errors = []
    outcome.detail = f"nothing changed since cycle {previous['cycle_id']}: {standing(outcome.counts)}"
    logger.info("verify: %s", outcome.detail)
    return outcome, previous, wanted, searched


def run(ctx: StageContext) -> StageOutcome:
    """Run the verify stage: the last outcome when nothing changed (``check``), else the verification itself
    (``stages.verify``), with the cycle collector paused (``collector.paused``)."""
    with collector.paused():
        kept, previous, wanted, searched = check(ctx)
        if kept is not None:
            return kept
        from comfywatchman.stages import verify

        return verify.verified(ctx, previous, wanted, searched)
