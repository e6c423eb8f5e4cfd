"""What a person sees while bytes arrive: a tqdm bar on a terminal, a log line per 10% otherwise (cron)."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from typing import IO, Protocol

from comfywatchman import humanize

logger = logging.getLogger(__name__)


class Progress(Protocol):
    """One file's progress: ``update`` with each chunk's byte count, ``close`` once."""

    def update(self, count: int) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Callable[[str, "int | None", int], Progress]


class LogProgress:
    """Logs ``label: 40% (2.6 GB of 6.5 GB, 85.0 MB/s, 46 s left)`` each time another 10% has arrived."""

    def __init__(self, label: str, total: int | None, initial: int, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.done, self._start_bytes = label, total, initial, initial
        self._clock = clock
        self._started = clock()
        self._next_step = (initial * 10 // total + 1) if total else 1

    def update(self, count: int) -> None:
        self.done += count
        if not self.total:
            return
        step = self.done * 10 // self.total
        if step >= self._next_step:
            self._next_step = step + 1
            elapsed = max(1e-6, self._clock() - self._started)
            rate = (self.done - self._start_bytes) / elapsed
            left = (self.total - self.done) / rate if rate > 0 else 0.0
            logger.info(
                "%s: %d%% (%s of %s, %s/s, %s left)",
                self.label,
                min(100, step * 10),
                humanize.size(self.done),
                humanize.size(self.total),
                humanize.size(int(rate)),
                humanize.duration(left),
            )

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm bar on the terminal: bytes, rate and time left."""

    def __init__(self, label: str, total: int | None, initial: int, stream: IO[str] | None = None) -> None:
        from tqdm import tqdm

        size = shutil.get_terminal_size((100, 20))
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1000,  # as humanize.size writes sizes (powers of 1000)
            file=stream or sys.stderr,
            leave=True,
            # A terminal that reports no size (a pty without one) would get no bar at all: 100 x 20 then.
            ncols=size.columns or 100,
            nrows=size.lines or 20,
        )

    def update(self, count: int) -> None:
        self._bar.update(count)

    def close(self) -> None:
        self._bar.close()


def default_factory(stream: IO[str] | None = None) -> ProgressFactory:
    """Return a factory making bars when ``stream`` (stderr) is a terminal, 10% log lines otherwise."""
    out = stream or sys.stderr
    if out.isatty():
        return lambda label, total, initial: BarProgress(label, total, initial, out)
    return lambda label, total, initial: LogProgress(label, total, initial)
