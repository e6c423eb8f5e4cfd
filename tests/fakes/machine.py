"""A fake machine for the scheduler tests: a wall clock, the awake/suspended clocks, NVML and a sleeper.

Time only moves when the code under test sleeps (or a test says so), so hours of schedule, suspends and
clock jumps run in milliseconds. Sleeping models Linux: ``time.sleep`` counts CLOCK_MONOTONIC, which stops
while suspended, so a sleep with a suspend in the middle ends that much later on the wall clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from comfywatchman.awake import ClockReading
from comfywatchman.stages.context import Machine

START = datetime(2025, 10, 23, 8, 0, tzinfo=timezone.utc)


@dataclass
class FakeMachine:
    """Clocks and scripted events. ``suspends`` maps an awake-clock time to a suspend duration (seconds)."""

    wall: datetime = START
    awake_s: float = 3600.0  # booted an hour before the test starts, well past any wake grace
    suspended_s: float = 0.0
    boot_id: str = "boot-1"
    suspends: dict[float, float] = field(default_factory=dict)
    slept: list[float] = field(default_factory=list)
    stop_at: datetime | None = None
    on_stop: Any = None

    def now(self) -> datetime:
        return self.wall

    def reading(self) -> ClockReading:
        return ClockReading(self.awake_s, self.suspended_s, self.boot_id, "linux")

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of awake time pass, going through any scripted suspend on the way."""
        end = self.awake_s + seconds
        for at in sorted(self.suspends):
            if self.awake_s <= at < end:
                self.wall += timedelta(seconds=at - self.awake_s)
                self.awake_s = at
                self.suspend(self.suspends.pop(at))
        self.wall += timedelta(seconds=end - self.awake_s)
        self.awake_s = end

    def suspend(self, seconds: float) -> None:
        """Suspend the machine: wall time and the suspended total move, the awake clock does not."""
        self.wall += timedelta(seconds=seconds)
        self.suspended_s += seconds

    def jump_clock(self, seconds: float) -> None:
        """Change the wall clock only (NTP step, manual change)."""
        self.wall += timedelta(seconds=seconds)

    def machine(self, nvml: Any = None) -> Machine:
        """Return this fake as the Machine a cycle reads: its clocks, ``nvml`` (a FakeNvml, or a function
        returning one per call; default: one idle 24 GiB GPU) and no ComfyUI listening."""
        load = nvml if callable(nvml) else (lambda: nvml if nvml is not None else FakeNvml.with_free(20.0))
        return Machine(read_clocks=self.reading, load_nvml=load, fetch_json=nothing_listening)

    def sleep(self, seconds: float) -> None:
        """The sleeper the code under test gets: advance, then ask to stop once past ``stop_at``."""
        self.slept.append(seconds)
        self.advance(seconds)
        if self.stop_at is not None and self.wall >= self.stop_at and self.on_stop is not None:
            self.on_stop()


class FakeNvml:
    """A double of the pynvml module: ``gpus`` is a list of (name, free bytes, total bytes) or an Exception
    (that GPU cannot be read); ``init_error`` / ``count_error`` make those calls raise."""

    GIB = 1024**3

    def __init__(
        self,
        gpus: list[Any] | None = None,
        init_error: Exception | None = None,
        count_error: Exception | None = None,
        shutdown_error: Exception | None = None,
    ) -> None:
        self.gpus = gpus or []
        self.init_error = init_error
        self.count_error = count_error
        self.shutdown_error = shutdown_error
        self.shutdowns = 0

    @classmethod
    def with_free(cls, *free_gib: float, total_gib: float = 24.0, name: Any = "NVIDIA GeForce RTX 4090") -> FakeNvml:
        return cls([(name, int(f * cls.GIB), int(total_gib * cls.GIB)) for f in free_gib])

    def nvmlInit(self) -> None:
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        if self.shutdown_error:
            raise self.shutdown_error

    def nvmlDeviceGetCount(self) -> int:
        if self.count_error:
            raise self.count_error
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if isinstance(self.gpus[index], Exception):
            raise self.gpus[index]
        return index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        _, free, total = self.gpus[handle]
        return type("Memory", (), {"free": free, "total": total, "used": total - free})()

    def nvmlDeviceGetName(self, handle: int) -> Any:
        return self.gpus[handle][0]


def nothing_listening(url: str, timeout: float) -> Any:
    """The HTTP GET of a machine where no server listens on ``url``: refused, as a real socket would be."""
    raise ConnectionRefusedError(111, f"Connection refused: {url}")


class NVMLError(Exception):
    """Like pynvml.NVMLError: its str() is NVML's message."""


# The [schedule] section as config/default.toml sets it, for tests that build configs by hand.
SCHEDULE: dict[str, Any] = {
    "interval_minutes": 120,
    "retry_minutes": 15,
    "min_vram_gb": 4.0,
    "require_gpu": False,
    "gpu_index": -1,
    "wake_grace_seconds": 300,
    "check_comfyui_queue": True,
    "comfyui_timeout_seconds": 1.0,
    "loop_poll_seconds": 30,
}
