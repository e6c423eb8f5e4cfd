"""Progress bars for the scan and the search, on a terminal only.

Under cron, in a pipe or with ``--quiet`` there is no bar: :func:`track` hands the items through untouched.
Bars are drawn by tqdm on stderr and vanish when done (the stage's one-line summary follows); log lines
written while a bar is shown go through :func:`write` so they do not tear it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

_enabled = False
_active: list[Any] = []


def configure(enabled: bool) -> None:
    """Turn the bars on (a terminal, not ``--quiet``) or off."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    """Return whether :func:`track` draws bars."""
    return _enabled


def active() -> bool:
    """Return whether a bar is on screen now."""
    return bool(_active)


def track(items: Iterable[T], total: int | None = None, label: str = "", unit: str = "file") -> Iterator[T]:
    """Yield ``items``, drawing a bar of ``total`` steps labelled ``label`` while bars are enabled.

    The bar closes as soon as ``total`` items were handed out, so a caller that takes exactly ``total``
    items with ``next()`` and never exhausts the iterator still sees it go.
    """
    if not _enabled or total == 0:
        yield from items
        return
    from tqdm import tqdm

    # tqdm's monitor thread would outlive the bar and keep every later cycle of a --scheduler loop from running
    # cache and intake side by side (no fork while another thread runs); bars here are updated every item.
    tqdm.monitor_interval = 0
    # A terminal that reports no size (a bare pty, some consoles) would get no bar at all: assume 80x24 there.
    sized = _terminal_width() > 0
    size: dict[str, Any] = {"dynamic_ncols": True} if sized else {"ncols": 80, "nrows": 24}
    bar = tqdm(total=total, desc=label, unit=unit, file=sys.stderr, leave=False, **size)
    _active.append(bar)
    try:
        for count, item in enumerate(items, start=1):
            bar.update(1)
            if total is not None and count >= total:
                _close(bar)
            yield item
    finally:
        _close(bar)


def _terminal_width() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def _close(bar: Any) -> None:
    if bar in _active:
        _active.remove(bar)
        bar.close()


def _forget_in_child() -> None:
    # A forked worker draws nothing: the bars on screen belong to the parent.
    global _enabled
    _enabled = False
    _active.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def write(text: str, stream: TextIO) -> None:
    """Write one line above the bars on screen (or plainly when none is)."""
    if _active:
        from tqdm import tqdm

        tqdm.write(text, file=stream)
    else:
        stream.write(text + "\n")
