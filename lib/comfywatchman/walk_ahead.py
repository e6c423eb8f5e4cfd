"""The model walk of a cycle, begun as the cycle's process starts, on the core that would wait for it.

A cycle's process spends its first ~0.1 s starting Python, loading the program, the config, the lock and the
gate, on one core, before the cache stage starts walking the model folders (a stat per model file: ~0.1 s at
20,000 files). The walk only reads, and what it finds is as true a moment earlier: so the entry point calls
``start`` for ``--run-cycle`` before it loads anything else, and ``start`` forks a child that walks the folders
the cache stage walked last time (the plan that stage keeps, ``state/model_walk_plan.bin``, with each folder's
suffixes and bounds). The cache stage takes the child's answer (``take``) when the folders it would walk now are
exactly those, with the same suffixes and bounds; else it walks them itself, as always, and keeps the new plan.
The cycle ends the child (``end``) once its cache stage has run, or when the cycle ends before (the gate or the
lock skipped it, or an error); a later cache stage of the same cycle (after downloads) walks again.

Where: where ``fork_rules`` allows a fork, for a home the command line (``--home``) or ``COMFYWATCHMAN_HOME``
names (the home of the config's ``[paths]`` is known only once the config is loaded). A first cycle has no plan
and walks as before.

This module imports little, and nothing that the rest of the program needs first: ``start`` runs before it.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import sys
from contextlib import suppress

from comfywatchman import fork_rules

TYPE_CHECKING = False  # typing is left unloaded (see the module); mypy reads this name as typing's
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any, NoReturn

    from comfywatchman.comfy.model_walk import Walked

    #: The folders to walk, each [folder type, directory, its model suffixes (sorted), max depth, max entries].
    Plan = list[list[Any]]

FILE_NAME = "model_walk_plan.bin"  # in the home's state folder (catalogue: model_walk_plan)
TAG = b"comfywatchman model walk plan 1"
# The child's answer: its length (8 bytes, big-endian), then a marshal of one ``model_walk.Walked`` per folder.
_LENGTH = struct.Struct(">Q")


class _Walker:
    """The child walking ``plan``, and the pipe its answer comes through."""

    def __init__(self, pid: int, answer: int, plan: Plan) -> None:
        self.pid, self.answer, self.plan = pid, answer, plan
        self.taken = False


_walker: _Walker | None = None


def start(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Fork the child that walks the model folders of the plan kept in the home of the command line ``argv``
    (``--run-cycle`` only); return whether one was started. Nothing is started where no fork is allowed, no
    home is named, or no plan is kept (see the module)."""
    global _walker
    if _walker is not None or "--run-cycle" not in argv or fork_rules.fork_refusal(environ) is not None:
        return False
    home = named_home(argv, environ)
    plan = read_plan(os.path.join(home, "state", FILE_NAME)) if home else None
    if not plan:
        return False
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return False
    for stream in (sys.stdout, sys.stderr):  # else what they buffered would be written by both processes
        if stream is not None:
            stream.flush()
    try:
        pid = os.fork()
    except OSError:  # no memory or process slot: the cache stage walks, as without a plan
        os.close(read_end)
        os.close(write_end)
        return False
    if pid == 0:  # pragma: no cover - checked by the answer it sends
        os.close(read_end)
        _walk_and_answer(write_end, plan)
    os.close(write_end)
    _walker = _Walker(pid, read_end, plan)
    import atexit  # the command may end before its cycle does (a usage error): the child must not outlive it

    atexit.register(end)
    return True


def named_home(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """Return the home folder ``argv`` names (the last ``--home DIR`` or ``--home=DIR``, as argparse takes it),
    else ``COMFYWATCHMAN_HOME``, as an absolute path with ``~`` expanded; None when neither names one, or the
    name holds a ``$VARIABLE`` (a shell expands those before the command sees them; one left for the config's
    own expansion is rare, and finds no home here). Another spelling argparse accepts, such as an abbreviation,
    finds none either: the walk is then not begun."""
    text = environ.get("COMFYWATCHMAN_HOME") or None
    for number, arg in enumerate(argv):
        if arg == "--home" and number + 1 < len(argv):
            text = argv[number + 1]
        elif arg.startswith("--home="):
            text = arg[len("--home=") :]
    if not text or "$" in text:
        return None
    return os.path.abspath(os.path.expanduser(text))


def read_plan(path: str) -> Plan | None:
    """Return the plan kept at ``path``, or None when there is none or it is not one (torn, foreign, edited)."""
    from comfywatchman.stages import cache_files  # here: a command other than a cycle's loads nothing of the stages

    try:
        with open(path, "rb") as handle:
            plan = marshal.loads(cache_files.checked_body(handle.read(), TAG))
    except (OSError, ValueError, EOFError, TypeError):
        return None
    return plan if is_plan(plan) else None


def is_plan(plan: object) -> bool:
    """Return whether ``plan`` is a plan: a list of [folder type, directory, suffixes, max depth, max entries]."""
    return isinstance(plan, list) and all(
        isinstance(job, list)
        and len(job) == 5
        and isinstance(job[0], str)
        and isinstance(job[1], str)
        and isinstance(job[2], list)
        and all(isinstance(suffix, str) for suffix in job[2])
        and all(isinstance(bound, int) for bound in job[3:])
        for job in plan
    )


def keep_plan(path: os.PathLike[str] | str, plan: Plan) -> bool:
    """Keep ``plan`` at ``path`` for the next cycle's process unless it holds it already; return whether it was
    written. Raise OSError when it cannot be written."""
    if read_plan(os.fspath(path)) == plan:
        return False
    from pathlib import Path

    from comfywatchman.stages import cache_files

    cache_files.write_checked(Path(path), TAG, marshal.dumps(plan))
    return True


def _walk_and_answer(answer: int, plan: Plan) -> NoReturn:
    """In the forked child: walk each folder of ``plan``, send what was found to ``answer`` and end the process;
    never returns into the code that forked it."""
    status = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a stop ends the child; the cycle decides the rest
            signal.signal(signum, signal.SIG_DFL)
        from comfywatchman.comfy.model_walk import walk

        body = marshal.dumps([walk(*job) for job in plan])
        view = memoryview(_LENGTH.pack(len(body)) + body)
        while view:
            view = view[os.write(answer, view) :]
        status = 0
    finally:
        os._exit(status)


def take(plan: Plan) -> list[Walked] | None:
    """Return what the child found, one ``model_walk.Walked`` per folder of ``plan``, when this process started
    one (or is a fork of one that did) that walks exactly ``plan`` and its answer was not taken; else None.
    Waits for the child to end its walk. Its answer is taken once: None after that, and after ``end``."""
    walker = _walker
    if walker is None or walker.taken or walker.plan != plan:
        return None
    walker.taken = True
    chunks = []
    with suppress(OSError):
        while chunk := os.read(walker.answer, 1 << 20):
            chunks.append(chunk)
    data = b"".join(chunks)
    if len(data) < _LENGTH.size or _LENGTH.unpack_from(data)[0] != len(data) - _LENGTH.size:
        return None  # the child failed or was killed: nothing, or part of an answer
    try:
        found = marshal.loads(memoryview(data)[_LENGTH.size :])
    except (EOFError, ValueError, TypeError):
        return None
    if not isinstance(found, list) or len(found) != len(plan):
        return None
    return found if all(isinstance(walked, tuple) and len(walked) == 4 for walked in found) else None


def end() -> None:
    """End the child this process started, whether or not its answer was taken, and wait for it. A later
    ``take`` gives None."""
    global _walker
    walker, _walker = _walker, None
    if walker is None:
        return
    os.close(walker.answer)  # a child still writing gets EPIPE
    with suppress(ProcessLookupError):
        os.kill(walker.pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        fork_rules.wait_child(walker.pid)
