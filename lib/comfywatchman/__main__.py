"""The process entry point: ``python -m comfywatchman`` and the ``comfywatchman`` command ([project.scripts])."""

from __future__ import annotations

import gc
import os
import sys
from typing import NoReturn


def run() -> int:
    """Run the command line of this process (``cli.main``) and return its exit code, for the process to exit with.

    The cycle collector is kept out of what only costs a short-lived process time: it is paused while the
    command's modules are imported (their classes, functions and tables live as long as the process; two dozen
    collections walked them for nothing) and what they made is frozen, out of its later walks; and before the
    process exits everything is frozen, so that the interpreter's shutdown does not walk every object once more
    (a tenth of a warm cycle). Objects are still freed, and finalizers and atexit handlers still run.

    A cycle's model walk begins first of all, in a child, on the core that the loading leaves idle
    (``walk_ahead``).
    """
    from comfywatchman import walk_ahead

    walk_ahead.start(sys.argv[1:], os.environ)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        from comfywatchman.cli import main
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
    code = main()
    gc.freeze()
    return code


def process() -> NoReturn:
    """Run the command line of this process (``run``) and end the process with its exit code (``exit_with``)."""
    exit_with(run())


def exit_with(code: int) -> NoReturn:
    """End this process with ``code``, doing first what an ordinary exit does that anyone sees: the atexit
    handlers (logging's last flush, the end of a cycle's walk ahead) and the flush of stdout and stderr. What it
    leaves out is the interpreter's teardown, which frees every object of the process one by one: ~7 ms of a
    warm cycle, more after a larger one, for memory the system takes back whole. Every file a stage writes is
    closed by then (written through a temp file and renamed, or appended and flushed). Where another thread
    still runs (an ordinary exit waits for it) or a flush fails, the process exits the ordinary way."""
    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        sys.exit(code)
    import atexit

    atexit._run_exitfuncs()  # what the interpreter runs first at an ordinary exit (private, stable since 2.x)
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):  # a closed pipe: the ordinary exit reports it as it always did
        sys.exit(code)
    os._exit(code)


if __name__ == "__main__":
    process()
