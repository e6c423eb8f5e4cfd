"""When this process may fork a child that runs Python code of ours and does not exec.

Where: Linux, with no other thread in the process (a fork copies only the forking thread; a lock another
thread held would stay held in the child forever). Not on macOS: a fork that is not followed by exec is unsafe
once Apple's frameworks have started (urllib's proxy lookup loads them, as the gate's ComfyUI check does), which
is why Python's own multiprocessing stopped forking there. Not on Windows (no fork). Not with one CPU: a child
there only takes turns with this process. Nor when ``COMFYWATCHMAN_FORK_STAGES=0``.

This module imports nothing of the project and little of the standard library: the process entry point asks
it before anything else is loaded (``walk_ahead``).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing is left unloaded (see the module); mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Mapping

# "0" keeps all the work in one process everywhere (a test's seam, and a way out should forking misbehave).
FORK_ENV = "COMFYWATCHMAN_FORK_STAGES"


def fork_refusal(environ: Mapping[str, str] | None = None) -> str | None:
    """Return why this process may not fork a child of ours now, or None when it may."""
    if (os.environ if environ is None else environ).get(FORK_ENV, "").strip() == "0":
        return f"{FORK_ENV}=0"
    if not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return f"no safe fork on {sys.platform}"
    if cpus() < 2:
        return "one CPU: nothing to gain"
    threads = thread_count()
    if threads > 1:
        return f"{threads} threads are running"
    return None


def cpus() -> int:
    """Return how many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def thread_count() -> int:
    """Return how many threads this process has, those Python did not start (a C library's) included."""
    try:
        native = len(os.listdir("/proc/self/task"))
    except OSError:
        native = 1
    # threading is imported only where some code has (it starts threads through it); else it ran none.
    threading = sys.modules.get("threading")
    return max(native, threading.active_count() if threading is not None else 1)


def wait_child(pid: int) -> int:
    """Wait for the child ``pid`` to end; return its wait status."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for a handler that raises it
            continue
