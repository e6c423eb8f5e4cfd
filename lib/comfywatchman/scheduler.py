"""The ``--scheduler`` loop: a guarded cycle whenever one is due, for machines without cron.

One cycle is :mod:`comfywatchman.cycle`'s; this module decides when (interval, retry, catch-up after a suspend
or clock jump, the wake grace) and waits in a way a stop signal ends at once. ``--scheduler-status`` is
:mod:`comfywatchman.schedule_status`.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from comfywatchman.awake import AwakeTracker, awake_for
from comfywatchman.config import Config
from comfywatchman.cycle import CycleResult, cycle_record, guarded_cycle
from comfywatchman.errors import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, ArtifactError, LockHeldError, LockUnusableError
from comfywatchman.lock import CycleLock
from comfywatchman.schedule_status import iso, parse_time
from comfywatchman.stages.context import Machine, new_cycle_id, utcnow
from comfywatchman.state_manager import StateManager
from comfywatchman.telemetry import StructuredLog

logger = logging.getLogger(__name__)


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


class SchedulerLoop:
    """The ``--scheduler`` loop: a guarded cycle whenever one is due, for users without cron.

    The clock, the machine (its suspend clocks behind the awake check, NVML, HTTP), the wait and the cycle
    itself are parameters, so a test drives hours of schedule, suspends and clock jumps in milliseconds.
    ``cycle(catch_up)`` runs one guarded cycle and returns its CycleResult (default: :func:`guarded_cycle`
    with trigger ``scheduler``, this loop's clock and machine).
    """

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        machine: Machine | None = None,
        waiter: SignalWaiter | None = None,
        cycle: Callable[[bool], CycleResult] | None = None,
        max_cycles: int | None = None,
        pid: int | None = None,
        backends: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.machine = machine or Machine()
        self.waiter = waiter or SignalWaiter()
        self.tracker = AwakeTracker(config.state_dir, reader=self.machine.read_clocks)
        self.cycle = cycle or self._default_cycle
        self.max_cycles = max_cycles
        self.backends = backends
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
            machine=self.machine,
            trigger="scheduler",
            backends=self.backends,
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
        recorded = parse_time((document or {}).get("next_run_at"))
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
            started, loop_pid=self.pid, loop_state="waiting", loop_started_at=iso(started), loop_stopped_at=None
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
                    iso(due),
                )
                self._write(now, next_run_at=iso(due), next_run_reason=why)
            if due > now:
                self._write(now, loop_pid=self.pid, loop_state="waiting", next_run_at=iso(due), next_run_reason=why)
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
                    next_run_at=iso(now + timedelta(seconds=grace_left)),
                    next_run_reason="grace",
                )
                self.waiter.wait(min(grace_left, self.poll_seconds))
                continue
            catch_up, self._catch_up_pending = self._catch_up_pending, False
            self._run_one(now, catch_up=catch_up)
        stopped = self.clock()
        self._write(stopped, loop_pid=None, loop_state="stopped", loop_stopped_at=iso(stopped))
        reason = self.waiter.signal_name or "done"
        logger.info("scheduler: stopped (%s)", reason)
        return EXIT_OK

    def _grace_left(self, reading: Any, observation: Any) -> float:
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
                    next_run_at=iso(finished + timedelta(minutes=float(self.schedule["retry_minutes"]))),
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
                cycle_record(cycle_id, now, now, EXIT_FAILED, None, {}, [message], "scheduler", catch_up)
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
    machine: Machine | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_cycles: int | None = None,
    backends: tuple[str, ...] | None = None,
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
    except LockUnusableError as exc:
        logger.error("%s", exc)
        return EXIT_FAILED
    waiter = SignalWaiter(sleep)
    waiter.install()
    try:
        return SchedulerLoop(
            config, clock=clock, machine=machine, waiter=waiter, max_cycles=max_cycles, backends=backends
        ).run()
    finally:
        waiter.uninstall()
        loop_lock.release()
