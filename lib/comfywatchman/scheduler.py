"""Running cycles: one guarded cycle (``--run-cycle``, ``make cycle``) or one stage alone (``make scan``).

This module owns the order of the stages and the gating, so ``make cycle`` and ``comfywatchman --run-cycle``
share one implementation. The lock is taken before the gate and held to the end of the cycle.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

from comfywatchman import artifacts
from comfywatchman.config import Config
from comfywatchman.errors import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, ArtifactError, LockHeldError, WatchmanError
from comfywatchman.lock import CycleLock
from comfywatchman.stages import ORDER, cache, gate, intake, report, scan, search
from comfywatchman.stages.context import StageContext, StageOutcome, new_cycle_id, utcnow
from comfywatchman.state_manager import StateManager
from comfywatchman.telemetry import StructuredLog

logger = logging.getLogger(__name__)

STAGE_RUNNERS: dict[str, Callable[..., StageOutcome]] = {
    "gate": gate.run,
    "cache": cache.run,
    "intake": intake.run,
    "scan": scan.run,
    "search": search.run,
    "report": report.run,
}


def lock_for(config: Config) -> CycleLock:
    """Return the cycle lock of ``config``'s state folder."""
    return CycleLock(config.state_dir / "cycle.lock")


def run_stage(name: str, ctx: StageContext, **kwargs: Any) -> StageOutcome:
    """Run one stage, never raising: a WatchmanError or a crash becomes a failed outcome with one line.

    The run is recorded in ``state/runs/<stage>.json`` and the structured log.
    """
    started = ctx.now()
    try:
        outcome = STAGE_RUNNERS[name](ctx, **kwargs)
    except WatchmanError as exc:
        outcome = StageOutcome(name)
        outcome.fail(str(exc))
    except Exception as exc:  # a bug must not take the rest of the cycle down; the traceback goes to DEBUG
        logger.debug("stage %s crashed:\n%s", name, traceback.format_exc())
        outcome = StageOutcome(name)
        outcome.fail(f"stage {name} crashed: {type(exc).__name__}: {exc} (run with --verbose for the traceback)")
    finished = ctx.now()
    for error in outcome.errors:
        logger.error("%s", error)
    try:
        StateManager(ctx.state_dir).record_stage(ctx.cycle_id, outcome, started, finished)
    except (OSError, ArtifactError) as exc:
        logger.error("cannot record the %s stage run: %s", name, exc)
    assert ctx.log is not None
    ctx.log.event(
        name,
        "skipped" if outcome.skipped_reason else ("finished" if outcome.ok else "failed"),
        level="INFO" if outcome.ok else "ERROR",
        workflows_scanned=outcome.counts.get("workflows", 0) if name == "scan" else 0,
        resolved=outcome.counts.get("found", 0),
        uncertain=outcome.counts.get("uncertain", 0),
        errors=len(outcome.errors),
        detail=outcome.skipped_reason or outcome.detail or "; ".join(outcome.errors),
        now=finished,
    )
    return outcome


def current_cycle_id(config: Config, now: datetime) -> str:
    """Return the cycle id a stage run alone belongs to: the last gate's, or a new one without a gate."""
    try:
        document = artifacts.read_optional(config.state_dir / gate.ARTIFACT, "gate")
    except ArtifactError:
        document = None
    return document["cycle_id"] if document else new_cycle_id(now)


def run_single_stage(
    name: str,
    config: Config,
    clock: Callable[[], datetime] = utcnow,
    **kwargs: Any,
) -> int:
    """Run stage ``name`` alone under the cycle lock; return its exit code (0, 1, or 75)."""
    try:
        with lock_for(config):
            now = clock()
            cycle_id = new_cycle_id(now) if name == "gate" else current_cycle_id(config, now)
            ctx = StageContext(config, cycle_id, clock, options=dict(kwargs.pop("options", {}) or {}))
            outcome = run_stage(name, ctx, **kwargs)
    except LockHeldError as exc:
        logger.warning("%s", exc)
        return EXIT_SKIPPED
    if outcome.skipped_reason:
        return EXIT_SKIPPED
    return EXIT_OK if outcome.ok else EXIT_FAILED


def run_cycle(
    config: Config,
    *,
    clock: Callable[[], datetime] = utcnow,
    force: bool = False,
    nvml: Any = None,
    options: dict[str, Any] | None = None,
    trigger: str = "manual",
) -> int:
    """Run one guarded cycle: lock, gate, then cache, intake, scan, search, report. Return the exit code.

    0 when every stage succeeded, 1 when any failed (the later stages still ran on what there was), 75
    when the gate or the lock skipped the cycle.
    """
    started = clock()
    state = StateManager(config.state_dir)
    interval = config.section("schedule")["interval_minutes"]
    retry = config.section("schedule")["retry_minutes"]
    try:
        lock = lock_for(config)
        lock.acquire()
    except LockHeldError as exc:
        logger.warning("%s", exc)
        cycle_id = new_cycle_id(started)
        StructuredLog(config.log_dir / "structured.log", cycle_id).event("gate", "skipped", detail=str(exc))
        return EXIT_SKIPPED
    try:
        cycle_id = new_cycle_id(started)
        ctx = StageContext(config, cycle_id, clock, options=dict(options or {}))
        outcomes = [run_stage("gate", ctx, nvml=nvml, force=force)]
        if not outcomes[0].skipped_reason:
            outcomes += [run_stage(name, ctx) for name in ORDER[1:]]
        finished = clock()
        skipped = outcomes[0].skipped_reason
        errors = [e for o in outcomes for e in o.errors]
        exit_code = EXIT_SKIPPED if skipped else (EXIT_OK if not errors else EXIT_FAILED)
        counts = _headline_counts(outcomes)
        state.record_cycle(
            {
                "id": cycle_id,
                "started_at": started.isoformat(timespec="seconds"),
                "duration_s": round((finished - started).total_seconds(), 3),
                "success": exit_code == EXIT_OK,
                "skipped_reason": skipped,
                "counts": counts,
                "exit_code": exit_code,
                "errors": errors,
                "trigger": trigger,
            }
        )
        outcome_word = "skipped" if skipped else ("success" if exit_code == EXIT_OK else "failed")
        state.record_outcome(finished, outcome_word, skipped, interval, retry, os.getpid())
        assert ctx.log is not None
        ctx.log.event("cycle", outcome_word, level="INFO" if exit_code != EXIT_FAILED else "ERROR",
                      workflows_scanned=counts.get("workflows_scanned", 0), resolved=counts.get("resolved", 0),
                      uncertain=counts.get("uncertain", 0), errors=len(errors), detail=skipped or "", now=finished)
        return exit_code
    finally:
        lock.release()


def _headline_counts(outcomes: list[StageOutcome]) -> dict[str, int]:
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
