"""One guarded cycle (``--run-cycle``, ``make cycle``, each turn of the ``--scheduler`` loop).

This module owns the order of the stages and the gating, so every way of running a cycle shares one
implementation. The lock is taken before the gate and held to the end of the cycle.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, NamedTuple

from comfywatchman import artifacts, prewarm, side_by_side, walk_ahead
from comfywatchman.config import Config
from comfywatchman.download import cycle as downloads
from comfywatchman.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    ArtifactError,
    LockHeldError,
    LockUnusableError,
    in_words,
)
from comfywatchman.stage_runner import lock_for, remove_leftovers, run_stage
from comfywatchman.stages import ORDER, SIDE_BY_SIDE
from comfywatchman.stages.context import Machine, StageContext, StageOutcome, new_cycle_id, utcnow
from comfywatchman.state_manager import StateManager
from comfywatchman.telemetry import StructuredLog

logger = logging.getLogger(__name__)


# A NamedTuple, not a frozen dataclass: every cycle's process makes this class, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class CycleResult(NamedTuple):
    """How one guarded cycle ended: its exit code, id, skip reason (gate or lock) and errors."""

    exit_code: int
    cycle_id: str
    skipped_reason: str | None = None
    errors: tuple[str, ...] = ()
    lock_held_by_other: bool = False


# What a --run-cycle may say started it (--trigger, COMFYWATCHMAN_TRIGGER); the --scheduler loop records "scheduler".
TRIGGERS = ("manual", "cron", "task-scheduler")


def trigger_from_env(env: dict[str, str] | None = None) -> str:
    """Return the trigger a cycle records: ``COMFYWATCHMAN_TRIGGER`` (one of TRIGGERS; crontab.example sets
    cron) or manual."""
    value = (os.environ if env is None else env).get("COMFYWATCHMAN_TRIGGER", "").strip().lower()
    return value if value in TRIGGERS else "manual"


def run_cycle(config: Config, **kwargs: Any) -> int:
    """Run one guarded cycle (see :func:`guarded_cycle` for the keyword arguments); return its exit code.

    0 when every stage succeeded, 1 when any failed (the later stages still ran on what there was), 75
    when the gate or the lock skipped the cycle.
    """
    return guarded_cycle(config, **kwargs).exit_code


def guarded_cycle(
    config: Config,
    *,
    clock: Callable[[], datetime] = utcnow,
    machine: Machine | None = None,
    force: bool = False,
    backends: tuple[str, ...] | None = None,
    trigger: str = "manual",
    catch_up: bool = False,
    auto_download: bool = False,
    dry_run: bool = False,
) -> CycleResult:
    """Run one guarded cycle like :func:`run_cycle` and return its CycleResult.

    ``clock`` and ``machine`` (default: the real ones) are what the stages read time, clocks, NVML and
    ComfyUI through; ``force``, ``backends`` and ``trigger`` are as on the command line. Every cycle, skipped
    ones included, is appended to ``cycles.jsonl`` and the structured log. The cycle that holds the lock
    also updates ``scheduler.json``; one refused by the lock leaves it to the holder, which is still running
    and will write its own outcome.
    """
    started = clock()
    state = StateManager(config.state_dir)
    cycle_id = new_cycle_id(started)
    lock = lock_for(config)
    try:
        lock.acquire()
    except LockHeldError as exc:
        logger.warning("%s", exc)
        reason = f"lock: {exc}"
        StructuredLog(config.log_dir / "structured.log", cycle_id).event("gate", "skipped", detail=reason, now=started)
        try:
            state.record_cycle(
                cycle_record(cycle_id, started, clock(), EXIT_SKIPPED, reason, {}, [], trigger, catch_up)
            )
        except (OSError, ArtifactError) as error:
            logger.error("cannot record the skipped cycle: %s", error)
        return CycleResult(EXIT_SKIPPED, cycle_id, reason, (), lock_held_by_other=True)
    except LockUnusableError as exc:
        # Not another cycle: something that is no lock file of ours is in its place. A failure to fix.
        logger.error("%s", exc)
        StructuredLog(config.log_dir / "structured.log", cycle_id).event(
            "gate", "failed", level="ERROR", errors=1, detail=str(exc), now=started
        )
        try:
            state.record_cycle(
                cycle_record(cycle_id, started, clock(), EXIT_FAILED, None, {}, [str(exc)], trigger, catch_up)
            )
        except (OSError, ArtifactError) as error:
            logger.error("cannot record the failed cycle: %s", error)
        return CycleResult(EXIT_FAILED, cycle_id, None, (str(exc),))
    try:
        # The folders of the files this cycle writes are flushed to disk once, at its end (see deferred_syncs).
        with artifacts.deferred_syncs():
            remove_leftovers(config)
            ctx = StageContext(
                config,
                cycle_id,
                clock,
                machine=machine or Machine(),
                force=force,
                lock=lock,
                backends=backends,
                auto_download=auto_download,
                dry_run=dry_run,
            )
            outcomes = [run_stage("gate", ctx)]
            if not outcomes[0].skipped_reason and outcomes[0].ok:
                outcomes += side_by_side.run_side_by_side(
                    SIDE_BY_SIDE, ctx, meanwhile=prewarm_after, ahead=ahead_of_cache
                )
                walk_ahead.end()  # its answer was for this cache stage; a later one (after downloads) walks anew
                ran = {outcome.stage for outcome in outcomes}
                for name in ORDER[1:-1]:
                    if name in ran:
                        continue
                    if name == "search":
                        check_headers_meanwhile(ctx)
                        beside = verify_beside_search(ctx, outcomes)
                        if beside is not None:
                            outcomes += beside
                            ran.add("verify")
                            continue
                    outcomes.append(run_stage(name, ctx))
                outcomes += downloads.in_cycle(ctx, run_stage)  # auto-download: trusted files, then cache+scan again
                outcomes.append(run_stage(ORDER[-1], ctx))
            return _record(config, ctx, started, outcomes, trigger, catch_up)
    finally:
        side_by_side.reap()
        walk_ahead.end()
        end_header_check()
        lock.release()


def verify_beside_search(ctx: StageContext, outcomes: list[StageOutcome]) -> list[StageOutcome] | None:
    """Run the search and the verify at once (``side_by_side.run_beside``: the verify in a forked child, its run
    kept when the search left the FOUND answers and the download queue as they were, ``search_basis``) when few
    workflows are new or changed (``few_changed``: the two processes then hold little; a first cycle's would
    hold twice the scan's memory); return their outcomes, or None when they are to run one after the other."""
    intake = next((outcome for outcome in outcomes if outcome.stage == "intake"), None)
    if intake is None or not few_changed(intake):
        return None
    try:
        from comfywatchman.stages import verify_inputs  # the verify's runner: imported in the cycle's wait
    except Exception:  # the verify's own run says why, after the search, as always
        return None
    return side_by_side.run_beside("search", "verify", ctx, lambda: verify_inputs.search_basis(ctx.state_dir))


def few_changed(intake: StageOutcome) -> bool:
    """Return whether ``intake``'s outcome says fewer workflows are new or changed than the scan hands to worker
    processes (most cycles); False when it failed before counting, or the scan module cannot load."""
    try:
        from comfywatchman.stages.scan import MIN_PARALLEL  # imported by the cycle's wait already (prewarm)
    except Exception:  # a scan module that cannot load: the scan's own run says why
        return False
    counts = intake.counts
    if "new" not in counts or "changed" not in counts:  # intake failed before counting
        return False
    return counts["new"] + counts["changed"] < MIN_PARALLEL


def ahead_of_cache(intake: StageOutcome) -> tuple[str, ...]:
    """Return the stages to run while the cache child still walks the install (``side_by_side``, ``ahead``): the
    scan, the search and the verify (they read of the cache stage only its caches, and nothing of the cycle's
    records, which the report does) when ``intake``'s outcome says fewer workflows are new or changed than the scan
    hands to worker processes (most cycles: the scan parses few files); else none, as a scan of many new workflows
    would add its memory to the child's and lose its work where the install changed. (A scan that compares every
    workflow anew from its store, with nothing new, still runs ahead: at 8,000 workflows its process tree peaked at
    200 MB, under the 236 MB of a first cycle.)"""
    return AHEAD if few_changed(intake) else ()


# What ``ahead_of_cache`` runs ahead: the stages after intake up to the report, in order.
AHEAD = ("scan", "search", "verify")


# The stages a cycle runs after the cache and the intake, whose modules ``prewarm_after`` imports.
LATER_STAGES = tuple(name for name in ORDER if name not in ("gate", *SIDE_BY_SIDE))


def check_headers_meanwhile(ctx: StageContext) -> None:
    """Start the report's header check of every installed file before the search when the report will run it
    (``report.start_header_check``): the search and the verify keep one core busy, the check the other, and the
    report finds its answer ready instead of waiting for it (a first cycle at 2,000 workflows waited 20-85 ms)."""
    try:
        from comfywatchman.stages import report  # the report's module: imported in the cycle's wait (prewarm)

        started = report.start_header_check(ctx.state_dir)
    except Exception as exc:  # only when the work is done: the report runs the check itself, or says why not
        logger.debug("the header check not started before the search: %s", in_words(exc))
        return
    if started:
        logger.debug("the header check of every installed model file started before the search")


def end_header_check() -> None:
    """End a header check started early that the report did not take (it failed, or kept its findings)."""
    module = sys.modules.get("comfywatchman.reporting.broken_models")
    if module is not None and type(module).__name__ != "_LazyModule":  # loaded: it may have started one
        module.end_early()


def prewarm_after(intake: StageOutcome) -> None:
    """Import what the stages after the intake load, while this process would only wait for the cache child
    (``prewarm``): their runners in every cycle (each checks whether its inputs changed), and what they load when
    they have work only when ``intake``'s outcome says a workflow is new, changed or removed (the scan then
    makes entries and the later stages work)."""
    counts = intake.counts
    changed = bool(counts.get("new") or counts.get("changed") or counts.get("removed"))
    prewarm.import_for(LATER_STAGES, work=changed)


def _record(
    config: Config, ctx: StageContext, started: datetime, outcomes: list[StageOutcome], trigger: str, catch_up: bool
) -> CycleResult:
    """Record the finished cycle in ``cycles.jsonl``, ``scheduler.json`` and the structured log; return it."""
    state = StateManager(config.state_dir)
    schedule = config.section("schedule")
    finished = ctx.now()
    skipped = outcomes[0].skipped_reason
    errors = [e for o in outcomes for e in o.errors]
    exit_code = EXIT_SKIPPED if skipped else (EXIT_OK if not errors else EXIT_FAILED)
    counts = headline_counts(outcomes)
    try:
        state.record_cycle(
            cycle_record(ctx.cycle_id, started, finished, exit_code, skipped, counts, errors, trigger, catch_up)
        )
    except (OSError, ArtifactError) as exc:  # a full disk: said in one line, and the cycle counts as failed
        if isinstance(exc, OSError) and not exc.filename:  # a write's error names no file: this is the one
            exc.filename = str(state.cycles_path)
        errors.append(f"cannot record the cycle: {in_words(exc)}")
        logger.error("%s", errors[-1])
        exit_code = EXIT_FAILED
    outcome_word = "skipped" if skipped else ("success" if exit_code == EXIT_OK else "failed")
    try:
        state.record_outcome(
            finished,
            outcome_word,
            skipped,
            schedule["interval_minutes"],
            schedule["retry_minutes"],
            os.getpid(),
            cycle_id=ctx.cycle_id,
            exit_code=exit_code,
            trigger=trigger,
            error=errors[0] if errors else None,
        )
    except (OSError, ArtifactError) as exc:
        logger.error("cannot record when the next cycle is due: %s", in_words(exc))
    assert ctx.log is not None
    ctx.log.event(
        "cycle",
        outcome_word,
        level="INFO" if exit_code != EXIT_FAILED else "ERROR",
        workflows_scanned=counts.get("workflows_scanned", 0),
        resolved=counts.get("resolved", 0),
        uncertain=counts.get("uncertain", 0),
        errors=len(errors),
        detail=skipped or "",
        now=finished,
    )
    return CycleResult(exit_code, ctx.cycle_id, skipped, tuple(errors))


def cycle_record(
    cycle_id: str,
    started: datetime,
    finished: datetime,
    exit_code: int,
    skipped: str | None,
    counts: dict[str, int],
    errors: list[str],
    trigger: str,
    catch_up: bool,
) -> dict[str, Any]:
    """Return the ``cycles.jsonl`` line of one cycle."""
    record: dict[str, Any] = {
        "id": cycle_id,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(max(0.0, (finished - started).total_seconds()), 3),
        "success": exit_code == EXIT_OK,
        "skipped_reason": skipped,
        "counts": counts,
        "exit_code": exit_code,
        "errors": errors,
        "trigger": trigger,
    }
    if catch_up:
        record["catch_up"] = True
    return record


def headline_counts(outcomes: list[StageOutcome]) -> dict[str, int]:
    """Return the counts a cycle record and the log carry, from the stages' outcomes."""
    by_stage = {o.stage: o.counts for o in outcomes}
    return {
        "workflows_scanned": by_stage.get("scan", {}).get("workflows", 0),
        "missing_models": by_stage.get("scan", {}).get("missing_models", 0),
        "missing_nodes": by_stage.get("scan", {}).get("missing_nodes", 0),
        "resolved": by_stage.get("search", {}).get("found", 0),
        "uncertain": by_stage.get("search", {}).get("uncertain", 0),
        "ready": by_stage.get("report", {}).get("ready", 0),
        "errors": sum(len(o.errors) for o in outcomes),
    }
