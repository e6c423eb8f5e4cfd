"""The process entry point: ``python -m comfywatchman`` and the ``comfywatchman`` command ([project.scripts])."""

from __future__ import annotations

import gc
import os
import sys


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


if __name__ == "__main__":
    sys.exit(run())
