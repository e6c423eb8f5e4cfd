"""Running cycles: one guarded cycle (``--run-cycle``, ``make cycle``) or one stage alone (``make scan``).

This module owns the order of the stages and the gating, so ``make cycle`` and ``comfywatchman --run-cycle``
share one implementation. The lock is taken before the gate and held to the end of the cycle.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from comfywatchman import artifacts, humanize
from comfywatchman.awake import AwakeTracker
from comfywatchman.config import Config
from comfywatchman.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SKIPPED,
    ArtifactError,
    LockHeldError,
    WatchmanError,
)
from comfywatchman.lock import CycleLock, probe_held
from comfywatchman.stages import ORDER, cache, gate, intake, report, scan, search, verify
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
    "verify": verify.run,
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


@dataclass(frozen=True)
class CycleResult:
    """How one guarded cycle ended: its exit code, id, skip reason (gate or lock) and errors."""

    exit_code: int
    cycle_id: str
    skipped_reason: str | None = None
    errors: tuple[str, ...] = ()
    lock_held_by_other: bool = False


def trigger_from_env(env: dict[str, str] | None = None) -> str:
    """Return the trigger a cycle records: ``COMFYWATCHMAN_TRIGGER`` (cron or manual; crontab.example sets
    it) or manual."""
    value = (os.environ if env is None else env).get("COMFYWATCHMAN_TRIGGER", "").strip().lower()
    return value if value in ("cron", "manual") else "manual"


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
    force: bool = False,
    nvml: Any = None,
    options: dict[str, Any] | None = None,
    trigger: str = "manual",
    fetch: Any = None,
    tracker: AwakeTracker | None = None,
    catch_up: bool = False,
) -> CycleResult:
    """Run one guarded cycle like :func:`run_cycle` and return its CycleResult.

    Every cycle, skipped ones included, is appended to ``cycles.jsonl`` and the structured log. The cycle
    that holds the lock also updates ``scheduler.json``; one refused by the lock leaves it to the holder,
    which is still running and will write its own outcome.
    """
    started = clock()
    state = StateManager(config.state_dir)
    schedule = config.section("schedule")
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
                _cycle_record(cycle_id, started, clock(), EXIT_SKIPPED, reason, {}, [], trigger, catch_up)
            )
        except (OSError, ArtifactError) as error:
            logger.error("cannot record the skipped cycle: %s", error)
        return CycleResult(EXIT_SKIPPED, cycle_id, reason, (), lock_held_by_other=True)
    try:
        ctx = StageContext(config, cycle_id, clock, options=dict(options or {}))
        outcomes = [run_stage("gate", ctx, nvml=nvml, force=force, lock=lock, fetch=fetch, tracker=tracker)]
        if not outcomes[0].skipped_reason and outcomes[0].ok:
            outcomes += [run_stage(name, ctx) for name in ORDER[1:]]
        finished = clock()
        skipped = outcomes[0].skipped_reason
        errors = [e for o in outcomes for e in o.errors]
        exit_code = EXIT_SKIPPED if skipped else (EXIT_OK if not errors else EXIT_FAILED)
        counts = _headline_counts(outcomes)
        state.record_cycle(
            _cycle_record(cycle_id, started, finished, exit_code, skipped, counts, errors, trigger, catch_up)
        )
        outcome_word = "skipped" if skipped else ("success" if exit_code == EXIT_OK else "failed")
        state.record_outcome(
            finished,
            outcome_word,
            skipped,
            schedule["interval_minutes"],
            schedule["retry_minutes"],
            os.getpid(),
            cycle_id=cycle_id,
            exit_code=exit_code,
            trigger=trigger,
            error=errors[0] if errors else None,
        )
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
        return CycleResult(exit_code, cycle_id, skipped, tuple(errors))
    finally:
        lock.release()


def _cycle_record(
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


# ------------------------------------------------------------------------------------------------------------
# The --scheduler loop


class _WaitInterrupted(Exception):
    """Raised by the signal handler, only while the loop sleeps, to end the sleep at once."""


class SignalWaiter:
    """Waits in a way a stop signal (SIGTERM, SIGINT/Ctrl-C, SIGHUP) ends at once, and never mid-write.

    The handler only sets ``stop_requested``, except while :meth:`wait` sleeps, when it also raises to cut the
    sleep short (a plain flag would leave ``time.sleep`` sleeping on: Python resumes it after the handler).
    During a cycle the first signal lets the cycle finish (its writes are atomic anyway) and the loop then
    stops; a second one stops at once.
    """

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self.stop_requested = False
        self.signal_name: str | None = None
        self._in_wait = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Install the stop handlers (main thread only), remembering the ones they replace."""
        for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK"):
            signum = getattr(signal, name, None)
            if signum is not None:
                self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Put back the handlers :meth:`install` replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def request_stop(self, why: str = "stop requested") -> None:
        """Ask the loop to stop at its next decision (tests, and the signal handler)."""
        self.stop_requested = True
        self.signal_name = self.signal_name or why

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.stop_requested and not self._in_wait:
            # Second signal while a cycle runs: the user means now. State files are written atomically and
            # the lock is released by the kernel, so stopping mid-cycle leaves everything whole.
            logger.warning("%s again: stopping now", name)
            raise SystemExit(128 + signum)
        self.request_stop(name)
        if self._in_wait:
            self._in_wait = False
            raise _WaitInterrupted
        logger.warning("%s: stopping once the running cycle ends (send it again to stop now)", name)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless a stop is requested first; return whether a stop was requested."""
        if self.stop_requested:
            return True
        try:
            self._in_wait = True
            if not self.stop_requested:
                self._sleep(max(0.0, seconds))
        except _WaitInterrupted:
            pass
        finally:
            self._in_wait = False
        return self.stop_requested


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


class SchedulerLoop:
    """The ``--scheduler`` loop: a guarded cycle whenever one is due, for users without cron.

    The clock, the clock reader behind the awake check, the wait and the cycle itself are parameters, so a
    test drives hours of schedule, suspends and clock jumps in milliseconds. ``cycle(catch_up)`` runs one
    guarded cycle and returns its CycleResult (default: :func:`guarded_cycle` with trigger ``scheduler``).
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        waiter: SignalWaiter | None = None,
        tracker: AwakeTracker | None = None,
        cycle: Callable[[bool], CycleResult] | None = None,
        max_cycles: int | None = None,
        pid: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.waiter = waiter or SignalWaiter()
        self.tracker = tracker or AwakeTracker(config.state_dir)
        self.cycle = cycle or self._default_cycle
        self.max_cycles = max_cycles
        self.options = dict(options or {})
        self.pid = os.getpid() if pid is None else pid
        self.state = StateManager(config.state_dir)
        self.schedule = config.section("schedule")
        self.cycles_run = 0
        self._catch_up_pending = False
        self._last_written: tuple[Any, ...] = ()

    def _default_cycle(self, catch_up: bool) -> CycleResult:
        return guarded_cycle(
            self.config,
            clock=self.clock,
            trigger="scheduler",
            tracker=self.tracker,
            options=self.options,
            catch_up=catch_up,
        )

    @property
    def interval(self) -> timedelta:
        return timedelta(minutes=float(self.schedule["interval_minutes"]))

    @property
    def poll_seconds(self) -> float:
        return float(self.schedule["loop_poll_seconds"])

    def due_at(self, now: datetime, document: dict[str, Any] | None) -> tuple[datetime, str]:
        """Given the time and ``scheduler.json``, return when the next cycle is due and why.

        Nothing recorded, or a recorded time that has passed, means now (``start``, or ``catch_up`` when it
        passed by more than a poll: the loop was suspended or stopped, and one cycle catches up, not one per
        missed interval). A recorded time further away than the longest delay means the clock went back:
        one interval from now.
        """
        recorded = _parse_time((document or {}).get("next_run_at"))
        if recorded is None:
            return now, "start"
        longest = max(self.interval, timedelta(minutes=float(self.schedule["retry_minutes"])))
        if recorded - now > longest + timedelta(seconds=self.poll_seconds):
            return now + self.interval, "clock_back"
        if recorded <= now - timedelta(seconds=2 * self.poll_seconds):
            return now, "catch_up"
        if recorded <= now:
            return now, (document or {}).get("next_run_reason") or "interval"
        return recorded, (document or {}).get("next_run_reason") or "interval"

    def _write(self, now: datetime, **fields: Any) -> None:
        key = tuple(sorted(fields.items()))
        if key == self._last_written:
            return
        try:
            self.state.update_scheduler(now, **fields)
            self._last_written = key
        except (OSError, ArtifactError) as exc:
            logger.error("cannot record the scheduler state: %s", exc)

    def run(self) -> int:
        """Run until a stop is requested (or ``max_cycles`` cycles ran); return the exit code (0)."""
        started = self.clock()
        self._write(
            started, loop_pid=self.pid, loop_state="waiting", loop_started_at=_iso(started), loop_stopped_at=None
        )
        logger.info(
            "scheduler: started (pid %s); a cycle every %g min, state in %s",
            self.pid,
            self.interval.total_seconds() / 60,
            self.state.scheduler_path,
        )
        while not self.waiter.stop_requested:
            if self.max_cycles is not None and self.cycles_run >= self.max_cycles:
                break
            now = self.clock()
            reading, observation = self.tracker.observe(now)
            document = self.state.read_scheduler()
            due, why = self.due_at(now, document)
            if why == "clock_back":
                logger.warning(
                    "scheduler: next run %s is too far ahead (the clock went back); rescheduled to %s",
                    (document or {}).get("next_run_at"),
                    _iso(due),
                )
                self._write(now, next_run_at=_iso(due), next_run_reason=why)
            if due > now:
                self._write(now, loop_pid=self.pid, loop_state="waiting", next_run_at=_iso(due), next_run_reason=why)
                # Sleep in slices: time.sleep stops counting while the machine is suspended, so only looking
                # at the wall clock again after each slice notices a suspend or a clock jump in time.
                self.waiter.wait(min((due - now).total_seconds(), self.poll_seconds))
                continue
            # Remembered across the grace wait below, which reschedules next_run_at and so hides the overdue.
            self._catch_up_pending = self._catch_up_pending or why == "catch_up"
            grace_left = self._grace_left(reading, observation)
            if grace_left > 0:
                logger.info(
                    "scheduler: the machine woke recently; the next cycle waits %.0f s more "
                    "([schedule] wake_grace_seconds)",
                    grace_left,
                )
                self._write(
                    now,
                    loop_pid=self.pid,
                    loop_state="waiting",
                    next_run_at=_iso(now + timedelta(seconds=grace_left)),
                    next_run_reason="grace",
                )
                self.waiter.wait(min(grace_left, self.poll_seconds))
                continue
            catch_up, self._catch_up_pending = self._catch_up_pending, False
            self._run_one(now, catch_up=catch_up)
        stopped = self.clock()
        self._write(stopped, loop_pid=None, loop_state="stopped", loop_stopped_at=_iso(stopped))
        reason = self.waiter.signal_name or "done"
        logger.info("scheduler: stopped (%s)", reason)
        return EXIT_OK

    def _grace_left(self, reading: Any, observation: Any) -> float:
        from comfywatchman.awake import awake_for

        since = awake_for(reading, observation) if reading.suspended_s is not None else None
        if since is None:
            return 0.0
        return max(0.0, float(self.schedule["wake_grace_seconds"]) - since)

    def _run_one(self, now: datetime, *, catch_up: bool) -> None:
        if catch_up:
            logger.info("scheduler: the schedule is overdue (suspend or clock jump): one catch-up cycle")
        self._write(now, loop_pid=self.pid, loop_state="running")
        self.cycles_run += 1
        try:
            result = self.cycle(catch_up)
        except Exception as exc:  # a crashing cycle is recorded and the loop goes on with the next one
            logger.debug("the cycle crashed:\n%s", traceback.format_exc())
            message = f"cycle crashed: {type(exc).__name__}: {exc}"
            logger.error("scheduler: %s", message)
            self._record_crash(message, catch_up)
        else:
            if result.lock_held_by_other:
                # Another cycle (cron, a manual run) holds the lock and writes its own outcome: just retry.
                finished = self.clock()
                self._write(
                    finished,
                    next_run_at=_iso(finished + timedelta(minutes=float(self.schedule["retry_minutes"]))),
                    next_run_reason="retry",
                    last_skip_reason=result.skipped_reason,
                )
        finished = self.clock()
        self._last_written = ()
        self._write(finished, loop_pid=self.pid, loop_state="waiting")

    def _record_crash(self, message: str, catch_up: bool) -> None:
        now = self.clock()
        cycle_id = new_cycle_id(now)
        try:
            self.state.record_cycle(
                _cycle_record(cycle_id, now, now, EXIT_FAILED, None, {}, [message], "scheduler", catch_up)
            )
            self.state.record_outcome(
                now,
                "failed",
                None,
                float(self.schedule["interval_minutes"]),
                float(self.schedule["retry_minutes"]),
                self.pid,
                cycle_id=cycle_id,
                exit_code=EXIT_FAILED,
                trigger="scheduler",
                error=message,
            )
        except (OSError, ArtifactError) as exc:
            logger.error("cannot record the crashed cycle: %s", exc)
        StructuredLog(self.config.log_dir / "structured.log", cycle_id).event(
            "cycle", "failed", level="ERROR", errors=1, detail=message, now=now
        )


def loop_lock_for(config: Config) -> CycleLock:
    """Return the lock a running ``--scheduler`` loop holds for its whole life (one loop per state folder)."""
    return CycleLock(config.state_dir / "scheduler.lock", purpose="scheduler")


def run_loop(
    config: Config,
    *,
    clock: Callable[[], datetime] = utcnow,
    sleep: Callable[[float], None] = time.sleep,
    max_cycles: int | None = None,
    options: dict[str, Any] | None = None,
) -> int:
    """Run the ``--scheduler`` loop in the foreground until SIGTERM, SIGINT or Ctrl-C; return the exit code.

    0 when stopped by a signal; 75 when another loop already runs on the same state folder.
    """
    loop_lock = loop_lock_for(config)
    try:
        loop_lock.acquire()
    except LockHeldError as exc:
        logger.error(
            "another --scheduler loop is running on %s (pid %s); not starting a second one",
            config.state_dir,
            exc.pid or "unknown",
        )
        return EXIT_SKIPPED
    waiter = SignalWaiter(sleep)
    waiter.install()
    try:
        return SchedulerLoop(config, clock=clock, waiter=waiter, max_cycles=max_cycles, options=options).run()
    finally:
        waiter.uninstall()
        loop_lock.release()


def describe_status(config: Config, now: datetime) -> dict[str, Any]:
    """Return what ``--scheduler-status`` shows: ``scheduler.json`` (all nulls when absent) plus whether a
    loop runs now (``loop_running``, from its lock) and the seconds until the next run (``due_in_s``)."""
    document = StateManager(config.state_dir).scheduler_document()
    due = _parse_time(document.get("next_run_at"))
    running = probe_held(config.state_dir / "scheduler.lock")
    return {
        **document,
        "loop_running": running,
        "due_in_s": None if due is None else round((due - now).total_seconds()),
        "state_file": str(StateManager(config.state_dir).scheduler_path),
    }


def format_status(status: dict[str, Any]) -> str:
    """Return ``describe_status``'s result as a few lines for people."""
    lines = []
    if status["loop_running"]:
        lines.append(
            f"scheduler loop: running (pid {status.get('loop_pid')}, "
            f"since {status.get('loop_started_at')}), {status.get('loop_state') or 'waiting'}"
        )
    elif status.get("loop_stopped_at"):
        lines.append(f"scheduler loop: not running (last one stopped at {status['loop_stopped_at']})")
    else:
        lines.append("scheduler loop: not running")
    if status["next_run_at"]:
        due = status["due_in_s"]
        when = "overdue" if due is not None and due <= 0 else f"in {humanize.duration(due or 0)}"
        why = f", {status['next_run_reason'].replace('_', '-')}" if status.get("next_run_reason") else ""
        lines.append(f"next run:       {status['next_run_at']} ({when}{why})")
    else:
        lines.append("next run:       not scheduled (no cycle recorded yet)")
    if status["last_run_at"]:
        trigger = f", {status['last_trigger']}" if status.get("last_trigger") else ""
        lines.append(f"last run:       {status['last_run_at']} ({status['last_outcome']}{trigger})")
    if status["last_skip_reason"]:
        lines.append(f"skipped because: {status['last_skip_reason']}")
    if status.get("last_error"):
        lines.append(f"last error:     {status['last_error']}")
    lines.append(f"state:          {status['state_file']}")
    return "\n".join(lines)
