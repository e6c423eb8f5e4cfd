"""Bounds for tests of code that, when broken, would never return: a deadline that raises instead."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class DeadlinePassed(AssertionError):
    """The code under test ran past its deadline (it would run on, or for far too long)."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise DeadlinePassed in the main thread when the block runs longer than ``seconds`` (SIGALRM)."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise DeadlinePassed(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
