"""Running one stage: the table of stages, the run that never raises, and a stage run alone (``make scan``)."""

from __future__ import annotations

import importlib
import logging
import traceback
from collections.abc import Callable
from datetime import datetime

from comfywatchman import artifacts, catalogue, logsetup
from comfywatchman.config import Config
from comfywatchman.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    ArtifactError,
    LockHeldError,
    LockUnusableError,
    WatchmanError,
    in_words,
)
from comfywatchman.lock import CycleLock
from comfywatchman.stages.context import Machine, StageContext, StageOutcome, new_cycle_id, utcnow
from comfywatchman.state_manager import StateManager

logger = logging.getLogger(__name__)


def _run_of(module: str) -> Callable[[StageContext], StageOutcome]:
    """Return a function that runs the ``run`` of stage module ``module``, importing it on the first call.

    A process imports only the stages it runs: ``make gate`` never pays for the scan's, the search's or the
    downloads' imports (requests among them), and the warm cycle pays for each when it runs."""

    def run(ctx: StageContext) -> StageOutcome:
        stage: Callable[[StageContext], StageOutcome] = importlib.import_module(module).run
        return stage(ctx)

    run.__qualname__ = run.__name__ = f"run_{module.rpartition('.')[2]}"
    return run


# The module whose ``run`` each stage is. Every stage is a function of its StageContext alone; what each reads and
# writes is in the catalogue.
RUNNER_MODULES: dict[str, str] = {
    "gate": "comfywatchman.stages.gate",
    "cache": "comfywatchman.stages.cache",
    "intake": "comfywatchman.stages.intake",
    "scan": "comfywatchman.stages.scan",
    "search": "comfywatchman.stages.search_inputs",  # imports stages.search when the search runs
    "verify": "comfywatchman.stages.verify_inputs",  # imports stages.verify when there is work
    "download": "comfywatchman.download.cycle",
    "report": "comfywatchman.stages.report",
}
STAGE_RUNNERS: dict[str, Callable[[StageContext], StageOutcome]] = {
    name: _run_of(module) for name, module in RUNNER_MODULES.items()
}


STAGE_NAMES = tuple(STAGE_RUNNERS)


def lock_for(config: Config) -> CycleLock:
    """Return the cycle lock of ``config``'s state folder."""
    return CycleLock(config.state_dir / "cycle.lock")


def remove_leftovers(config: Config) -> int:
    """Remove the temp files that killed writes left beside the artifacts of ``config``'s home; return how
    many. Called by the holder of the cycle lock before its first stage: no write of its own is under way,
    and a temp file of another live process (the --scheduler loop, a skipped cycle) is kept."""
    removed = []
    for folder, names in catalogue.files_by_folder(config.home, STAGE_NAMES).items():
        removed += artifacts.remove_stale_temp_files(folder, names)
    if removed:
        logger.info("removed %d temp file(s) left by an interrupted cycle: %s", len(removed), removed[0].name)
    return len(removed)


def run_stage(name: str, ctx: StageContext) -> StageOutcome:
    """Run one stage, never raising: a WatchmanError or a crash becomes a failed outcome with one line.

    The run is recorded in ``state/runs/<stage>.json`` and the structured log.
    """
    logsetup.begin_stage(name)
    started, outcome, finished = execute_stage(name, ctx)
    return record_stage_run(name, ctx, outcome, started, finished)


def execute_stage(name: str, ctx: StageContext) -> tuple[datetime, StageOutcome, datetime]:
    """Run stage ``name``'s work alone, never raising; return when it started, its outcome and when it ended.

    A WatchmanError or a crash becomes a failed outcome with one line (the traceback goes to DEBUG). Nothing is
    recorded: :func:`record_stage_run` does that (:func:`run_stage` runs both)."""
    started = ctx.now()
    try:
        outcome = STAGE_RUNNERS[name](ctx)
    except WatchmanError as exc:
        outcome = StageOutcome(name)
        outcome.fail(str(exc))
    except OSError as exc:  # the machine's, not a bug: a full disk, a drive gone, a permission taken away
        logger.debug("stage %s stopped:\n%s", name, traceback.format_exc())
        outcome = StageOutcome(name)
        outcome.fail(f"stage {name} stopped: {in_words(exc)}")
    except Exception as exc:  # a bug must not take the rest of the cycle down; the traceback goes to DEBUG
        logger.debug("stage %s crashed:\n%s", name, traceback.format_exc())
        outcome = StageOutcome(name)
        outcome.fail(f"stage {name} crashed: {type(exc).__name__}: {exc} (run with --verbose for the traceback)")
    return started, outcome, ctx.now()


def record_stage_run(
    name: str, ctx: StageContext, outcome: StageOutcome, started: datetime, finished: datetime
) -> StageOutcome:
    """Log the errors of stage ``name``'s run, write the diagnostics held since ``logsetup.begin_stage`` and
    record the run in ``state/runs/<stage>.json`` and the structured log; return ``outcome``."""
    for error in outcome.errors:
        logger.error("%s", error)
    logsetup.end_stage()
    try:
        StateManager(ctx.state_dir).record_stage(ctx.cycle_id, outcome, started, finished)
    except (OSError, ArtifactError) as exc:
        logger.error("cannot record the %s stage run: %s", name, in_words(exc))
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
        document = artifacts.read_optional(catalogue.path(config, "gate"), catalogue.schema("gate"))
    except ArtifactError:
        document = None
    return document["cycle_id"] if document else new_cycle_id(now)


def run_single_stage(
    name: str,
    config: Config,
    clock: Callable[[], datetime] = utcnow,
    *,
    machine: Machine | None = None,
    force: bool = False,
    backends: tuple[str, ...] | None = None,
) -> int:
    """Run stage ``name`` alone under the cycle lock; return its exit code (0, 1, or 75).

    ``machine`` (default: the real one) gives the gate its clocks, NVML and HTTP; ``force`` and ``backends``
    are as on the command line.
    """
    try:
        with lock_for(config):
            remove_leftovers(config)
            now = clock()
            cycle_id = new_cycle_id(now) if name == "gate" else current_cycle_id(config, now)
            ctx = StageContext(config, cycle_id, clock, machine=machine or Machine(), force=force, backends=backends)
            outcome = run_stage(name, ctx)
    except LockHeldError as exc:
        logger.warning("%s", exc)
        return EXIT_SKIPPED
    except LockUnusableError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    if outcome.skipped_reason:
        return EXIT_SKIPPED
    return EXIT_OK if outcome.ok else EXIT_FAILED
