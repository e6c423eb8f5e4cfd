"""Figures of the reliability suites (kills survived, longest cycle, peak memory, ...), printed at the end of
``make test-reliability``.

Tests call ``record``; loaded as a pytest plugin (``-p tests.helpers.figures``, what the Makefile target does)
this module prints every figure recorded in the session in its terminal summary. Without the plugin,
recording is harmless and nothing is printed.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any, Literal

import pytest

Mode = Literal["sum", "max", "all"]

_FIGURES: dict[str, tuple[Mode, Any]] = {}


def record(name: str, value: Any, mode: Mode = "sum") -> None:
    """Record ``value`` under ``name``: added up (``sum``), the largest kept (``max``), or every value kept
    in order (``all``, for true/false verdicts such as "nothing lost")."""
    if name not in _FIGURES:
        _FIGURES[name] = (mode, [value] if mode == "all" else value)
        return
    _, current = _FIGURES[name]
    if mode == "sum":
        _FIGURES[name] = (mode, current + value)
    elif mode == "max":
        _FIGURES[name] = (mode, max(current, value))
    else:
        current.append(value)


def figures() -> dict[str, Any]:
    """Return every figure recorded so far (``all`` figures as lists)."""
    return {name: value for name, (_, value) in _FIGURES.items()}


def wait_measured(process: subprocess.Popen[Any]) -> tuple[int, float]:
    """Wait for ``process`` and return (its exit code, its peak RSS in MB, its own and its children's).

    os.wait4 gives the usage of that one process (Linux folds in the children it waited for: the scan's
    workers), unlike RUSAGE_CHILDREN, which mixes every child the test session ever had.
    """
    if not hasattr(os, "wait4") or process.returncode is not None:  # Windows, or already reaped by poll()
        return process.wait(), 0.0
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux and bytes on macOS.
    scale = 1 / 1024 if os.uname().sysname != "Darwin" else 1 / (1024 * 1024)
    return process.returncode, usage.ru_maxrss * scale


def run_measured(args: list[str], **popen: Any) -> tuple[int, float, float]:
    """Run ``args`` to its end; return (exit code, seconds, peak RSS MB) and record the longest cycle and the
    peak memory figures."""
    started = time.monotonic()
    process = subprocess.Popen(args, **popen)
    code, peak = wait_measured(process)
    seconds = time.monotonic() - started
    record("longest cycle (s)", round(seconds, 2), "max")
    record("peak memory of a cycle (MB RSS)", round(peak, 1), "max")
    return code, seconds, peak


def _shown(value: Any) -> str:
    if isinstance(value, list) and value and all(isinstance(v, bool) for v in value):
        return f"{'yes' if all(value) else 'NO'} ({sum(value)} of {len(value)} checks)"
    return str(value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the figures recorded in this session."""
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    width = max(len(name) for name in _FIGURES)
    for name, value in figures().items():
        terminalreporter.write_line(f"{name.ljust(width)}  {_shown(value)}")
