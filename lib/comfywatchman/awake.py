"""Is the machine awake, or did it just resume from suspend (or boot)?

A cycle right after a resume competes with everything else waking up (the user's first render, the disk,
the network), so the gate waits ``[schedule] wake_grace_seconds`` after a resume. No portable API says *when*
the machine resumed, but every platform keeps two clocks of which only one counts time spent suspended:

- Linux: ``CLOCK_BOOTTIME`` counts suspend, ``CLOCK_MONOTONIC`` does not.
- macOS: ``CLOCK_MONOTONIC`` (mach_continuous_time) counts sleep, ``CLOCK_UPTIME_RAW`` does not.
- Windows: ``GetTickCount64`` counts sleep, ``QueryUnbiasedInterruptTime`` does not.

Their difference (the *suspended total*) is constant while the machine is awake and grows by the time spent
suspended. Each observation is recorded in ``state/awake.json``; when the total has grown since the last one,
the machine resumed somewhere in between, and since we cannot tell exactly when, the resume is taken to be
the moment it was noticed (the safe side). The ``--scheduler`` loop observes every ``[schedule]
loop_poll_seconds``, so it notices within that; a cron run notices only when it starts, so the first cron run
after a resume is skipped (exit 75) and the next one runs. Elsewhere (no second clock) the check passes and
says it cannot tell.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

logger = logging.getLogger(__name__)

ARTIFACT = "awake.json"
# The two clocks are read one after the other; a difference smaller than this is jitter, not a suspend.
SUSPEND_TOLERANCE_S = 1.0


# NamedTuples, not frozen dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.4 ms to
# make (Python 3.11), a NamedTuple a tenth of that.
class ClockReading(NamedTuple):
    """One reading of the machine's clocks.

    ``awake_s``: seconds awake since boot (excludes suspend). ``suspended_s``: total seconds suspended since
    boot, or None where the platform has no clock that counts suspend. ``boot_id``: identifies this boot
    where the platform says so (Linux), else None.
    """

    awake_s: float
    suspended_s: float | None
    boot_id: str | None = None
    platform: str = sys.platform


def _linux_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


# Defined on Windows only: ctypes.windll exists there alone (and mypy, told the platform, checks it so).
if sys.platform == "win32":  # pragma: no cover - Windows only

    def _read_windows() -> ClockReading:  # pragma: no cover - Windows only
        import ctypes

        kernel32 = ctypes.windll.kernel32
        kernel32.GetTickCount64.restype = ctypes.c_ulonglong
        unbiased = ctypes.c_ulonglong(0)
        # QueryUnbiasedInterruptTime is in 100 ns units and stops during sleep; GetTickCount64 (ms) does not.
        if not kernel32.QueryUnbiasedInterruptTime(ctypes.byref(unbiased)):
            return ClockReading(time.monotonic(), None)
        with_sleep = kernel32.GetTickCount64() / 1000.0
        awake = unbiased.value / 1e7
        return ClockReading(awake, max(0.0, with_sleep - awake))


def read_clocks() -> ClockReading:
    """Return the current ClockReading of this machine (``suspended_s`` None where it cannot be known)."""
    if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
        monotonic = time.clock_gettime(time.CLOCK_MONOTONIC)
        boottime = time.clock_gettime(time.CLOCK_BOOTTIME)
        return ClockReading(monotonic, max(0.0, boottime - monotonic), _linux_boot_id())
    if sys.platform == "darwin" and hasattr(time, "CLOCK_UPTIME_RAW"):  # pragma: no cover - macOS only
        uptime = time.clock_gettime(time.CLOCK_UPTIME_RAW)
        with_sleep = time.clock_gettime(time.CLOCK_MONOTONIC)
        return ClockReading(uptime, max(0.0, with_sleep - uptime))
    if sys.platform == "win32":  # pragma: no cover - Windows only
        return _read_windows()
    return ClockReading(time.monotonic(), None)  # pragma: no cover - other platforms


class Observation(NamedTuple):
    """What one look at the clocks concluded, with the record to persist.

    ``resumed_at_awake_s``: the awake-clock time of the latest resume or boot noticed (None: none known).
    ``new_resume``: True when this observation is the one that noticed it. ``slept_s``: seconds suspended
    between the previous observation and this one.
    """

    record: dict[str, Any]
    resumed_at_awake_s: float | None
    new_resume: bool
    slept_s: float
    changed: bool


def observe(reading: ClockReading, previous: dict[str, Any] | None, now: datetime) -> Observation:
    """Given the current ``reading`` and the ``previous`` awake.json record (or None), return the Observation.

    Without ``previous`` no resume is known. A different boot id, or a clock that went backwards, means a
    reboot: the boot counts as the latest resume. A suspended total that grew means a resume since
    ``previous``, taken to be now.
    """
    record = {
        "boot_id": reading.boot_id,
        "awake_s": round(reading.awake_s, 3),
        "suspended_s": None if reading.suspended_s is None else round(reading.suspended_s, 3),
        "observed_at": now.isoformat(timespec="seconds"),
        "resumed_at_awake_s": None,
        "platform": reading.platform,
    }
    if previous is None:
        # Nothing to compare with (the first run on this home): nothing is known about a recent resume, and
        # holding back a first run because the machine booted minutes ago (a CI runner) helps nobody.
        return Observation(record, None, False, 0.0, True)
    previous_suspended = previous.get("suspended_s")
    # Both totals only grow within one boot: either one going backwards means the machine restarted.
    rebooted = (
        (reading.boot_id is not None and previous.get("boot_id") not in (None, reading.boot_id))
        or reading.awake_s + SUSPEND_TOLERANCE_S < float(previous.get("awake_s") or 0.0)
        or (
            reading.suspended_s is not None
            and previous_suspended is not None
            and reading.suspended_s + SUSPEND_TOLERANCE_S < float(previous_suspended)
        )
    )
    if rebooted:
        record["resumed_at_awake_s"] = 0.0
        return Observation(record, 0.0, True, 0.0, True)
    resumed_before = previous.get("resumed_at_awake_s")
    slept = 0.0
    if reading.suspended_s is not None and previous_suspended is not None:
        slept = reading.suspended_s - float(previous_suspended)
    if slept > SUSPEND_TOLERANCE_S:
        record["resumed_at_awake_s"] = round(reading.awake_s, 3)
        return Observation(record, reading.awake_s, True, slept, True)
    record["resumed_at_awake_s"] = resumed_before
    # Only the facts that matter are compared (reading jitter aside): a record whose clocks merely moved on
    # is not rewritten, so an idle loop does not write a file every poll.
    changed = previous.get("boot_id") != record["boot_id"] or (previous_suspended is None) != (
        reading.suspended_s is None
    )
    return Observation(record, resumed_before, False, max(slept, 0.0), changed)


def awake_for(reading: ClockReading, observation: Observation) -> float | None:
    """Return the seconds the machine has been awake since the latest resume or boot (None: unknown)."""
    if observation.resumed_at_awake_s is None:
        return None
    return max(0.0, reading.awake_s - observation.resumed_at_awake_s)


class AwakeTracker:
    """Reads the clocks and keeps ``state/awake.json`` up to date; ``reader`` is injectable for tests."""

    def __init__(self, state_dir: Path, reader: Callable[[], ClockReading] | None = None) -> None:
        self.path = state_dir / ARTIFACT
        self.reader = reader

    def previous(self) -> dict[str, Any] | None:
        """Return the last recorded observation, or None (a broken file is logged and treated as absent)."""
        try:
            return artifacts.read_optional(self.path, "awake")
        except ArtifactError as exc:
            logger.warning("%s; comparing with no earlier reading", exc)
            return None

    def observe(self, now: datetime, *, persist: bool = True) -> tuple[ClockReading, Observation]:
        """Read the clocks, compare with the recorded observation, record the new one when it changed
        (and ``persist``); return the reading and the observation."""
        reading = (self.reader or read_clocks)()
        observation = observe(reading, self.previous(), now)
        if persist and observation.changed:
            try:
                artifacts.write(self.path, observation.record, "awake")
            except (OSError, ArtifactError) as exc:
                logger.warning("%s: cannot record the clock reading: %s", self.path, exc)
        if observation.new_resume:
            logger.info("the machine resumed or booted since the last look (%.0f s suspended)", observation.slept_s)
        return reading, observation
