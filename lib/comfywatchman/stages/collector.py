"""Python's cycle collector paused while a stage builds tens of thousands of small objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Pause the cycle collector for the block (and restore it as it was): a stage that makes tens of thousands
    of small, acyclic objects (parts, queries, answers) would have each collection walk every live object of
    the process, a share of its time for nothing; reference counting still frees them."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
