"""Running download tasks: decide, fetch, record each outcome in ``downloads.json``, add up the totals."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, humanize
from comfywatchman.download import paths, policy
from comfywatchman.download.fetch import Downloader, DownloadFailed, Fetched
from comfywatchman.download.state import DownloadState, new_record
from comfywatchman.download.tasks import Task
from comfywatchman.errors import ArtifactError

logger = logging.getLogger(__name__)


class Totals:
    """What one run did: files put in place, already present, failed (final), deferred, bytes and time."""

    # A plain class, not a dataclass: making a dataclass costs a process ~0.2 ms (Python 3.11).
    __slots__ = ("bytes", "deferred", "done", "failed", "lines", "present", "seconds")

    done: int
    present: int
    failed: int
    deferred: int
    bytes: int
    seconds: float
    lines: list[str]

    def __init__(
        self,
        done: int = 0,
        present: int = 0,
        failed: int = 0,
        deferred: int = 0,
        bytes: int = 0,
        seconds: float = 0.0,
        lines: list[str] | None = None,
    ) -> None:
        self.done, self.present, self.failed, self.deferred = done, present, failed, deferred
        self.bytes, self.seconds = bytes, seconds
        self.lines = [] if lines is None else lines

    def summary(self) -> str:
        """Return the one-line total a person reads at the end."""
        rate = f", {humanize.size(int(self.bytes / self.seconds))}/s" if self.seconds > 0 and self.bytes else ""
        return (
            f"downloads: {self.done} downloaded, {self.present} already in place, {self.failed} failed, "
            f"{self.deferred} to retry; {humanize.size(self.bytes) if self.bytes else '0 B'} in "
            f"{humanize.duration(self.seconds)}{rate}"
        )


def folder_dirs(model_cache: dict[str, Any] | None, folder: str | None) -> list[str]:
    """Return the directories of folder type ``folder`` from the cache stage's artifact (empty if unknown)."""
    if not model_cache or not folder:
        return []
    entry = model_cache["folders"].get(folder)
    return list(entry["paths"]) if entry else []


def read_model_cache(state_dir: Any) -> dict[str, Any] | None:
    """Return ``model_cache.json`` of ``state_dir``, or None (logged) when it is missing or broken."""
    try:
        document: dict[str, Any] | None = artifacts.read_optional(state_dir / "model_cache.json", "model_cache")
        return document
    except ArtifactError as exc:
        logger.error("%s", exc)
        return None


def plan(
    tasks: list[Task], model_cache: dict[str, Any] | None, *, auto: bool, trusted_hosts: list[str]
) -> list[tuple[Task, policy.Decision, paths.Target | str]]:
    """Return each task with its decision and its Target (or why it has none)."""
    out: list[tuple[Task, policy.Decision, paths.Target | str]] = []
    for task in tasks:
        try:
            target: paths.Target | str = paths.target_for(folder_dirs(model_cache, task.folder), task.name)
        except paths.UnsafeTarget as exc:
            target = str(exc)
        exists = isinstance(target, paths.Target) and os.path.isfile(target.path)
        decision = policy.decide(task.item, task.record, auto=auto, trusted_hosts=trusted_hosts, target_exists=exists)
        out.append((task, decision, target))
    return out


def describe(task: Task, target: paths.Target | str, url: str) -> str:
    """Return one line saying what a run would do for ``task``."""
    where = target.path if isinstance(target, paths.Target) else f"nowhere ({target})"
    check = f"SHA256 {task.item['sha256'][:12]}…" if task.item.get("sha256") else "size only (no published hash)"
    return (
        f"{task.id}  {task.folder}/{task.name} ({humanize.size(task.item.get('size'))}) from {url} to {where}, "
        f"verified by {check}"
    )


def run(
    planned: list[tuple[Task, policy.Decision, paths.Target | str]],
    downloader: Downloader,
    state: DownloadState,
    now: Callable[[], datetime],
    *,
    dry_run: bool = False,
    clock: Callable[[], float] = time.monotonic,
) -> Totals:
    """Run every planned task whose decision says so; record each outcome; return the totals.

    With ``dry_run`` nothing is fetched or recorded: the totals' lines say what would happen.
    """
    totals = Totals()
    started = clock()
    verified: dict[str, Path] = {}  # sha256 -> a file this run put in place: the same file is fetched once
    for task, decision, target in planned:
        if not decision.run:
            continue
        url = downloader.rewriter.rewrite(task.item["url"])
        if dry_run:
            line = describe(task, target, downloader.scrub(url))
            totals.lines.append(f"would download {line} [{decision.why}]")
            continue
        outcome = _run_one(task, target, downloader, verified)
        if outcome["sha256"] and outcome["verified"] == "sha256" and outcome["path"]:
            verified.setdefault(outcome["sha256"], Path(outcome["path"]))
        _record(state, task, decision, outcome, now())
        totals.lines.append(f"{task.id}  {task.folder}/{task.name}: {_said(outcome)}")
        status = outcome["status"]
        totals.bytes += outcome["bytes"]
        if status in ("done", "copied"):
            totals.done += 1
        elif status == "present":
            totals.present += 1
        elif status == "failed":
            totals.failed += 1
        else:
            totals.deferred += 1
    totals.seconds = clock() - started
    return totals


def _run_one(
    task: Task, target: paths.Target | str, downloader: Downloader, verified: dict[str, Path]
) -> dict[str, Any]:
    if not isinstance(target, paths.Target):
        return _failure("failed", f"no safe place for it: {target}")
    sha256, size = task.item.get("sha256"), task.item.get("size")
    try:
        source = verified.get((sha256 or "").lower())
        if source is not None and sha256:
            fetched = downloader.copy_local(source, target, sha256, size)
        else:
            fetched = downloader.fetch(task.item["url"], target, sha256, size)
    except paths.UnsafeTarget as exc:
        return _failure("failed", f"refused: {exc}")
    except DownloadFailed as exc:
        return _failure("failed" if exc.final else "deferred", downloader.scrub(exc.reason))
    except OSError as exc:
        return _failure("failed", downloader.scrub(f"cannot write {target.path}: {exc.strerror or exc}"))
    return _success(fetched)


def _failure(status: str, reason: str) -> dict[str, Any]:
    return {"status": status, "reason": reason, "path": None, "bytes": 0, "seconds": 0.0, "sha256": None,
            "verified": "none"}  # fmt: skip


def _success(fetched: Fetched) -> dict[str, Any]:
    note = ""
    if fetched.served_as and fetched.served_as != fetched.path.name:
        note = f"the server calls it {fetched.served_as}; saved under the name the workflow uses"
    return {
        "status": fetched.status,
        "reason": note,
        "path": str(fetched.path),
        "bytes": fetched.transferred,
        "seconds": round(fetched.seconds, 3),
        "sha256": fetched.sha256,
        "verified": fetched.verified,
    }


def _said(outcome: dict[str, Any]) -> str:
    status = outcome["status"]
    if status == "done":
        return f"downloaded, {outcome['verified']} verified -> {outcome['path']}"
    if status == "copied":
        return f"copied from the same file downloaded in this run, sha256 verified -> {outcome['path']}"
    if status == "present":
        return f"already in place ({outcome['verified']} verified)"
    return f"{status}: {outcome['reason']}"


def _record(state: DownloadState, task: Task, decision: policy.Decision, outcome: dict[str, Any], at: datetime) -> None:
    def change(old: dict[str, Any] | None) -> dict[str, Any]:
        record = dict(old or new_record(task.id, task.name, task.folder, task.item["url"]))
        if decision.by == "policy":
            record["approved_at"] = record["approved_at"] or at.isoformat(timespec="seconds")
            record["approved_by"] = record["approved_by"] or "policy"
        previous = record.get("outcome") or {}
        attempts = int(previous.get("attempts", 0)) + 1 if previous.get("status") in ("deferred", "failed") else 1
        record["outcome"] = {**outcome, "at": at.isoformat(timespec="seconds"), "attempts": attempts}
        return record

    try:
        state.update({task.id: change})
    except (OSError, ArtifactError) as exc:
        logger.error("cannot record the outcome of download %s: %s", task.id, exc)
