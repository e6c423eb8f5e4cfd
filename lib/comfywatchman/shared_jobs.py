"""Numbered jobs done by this process and a forked child at once, each taking the next number from one pipe.

For work that is mostly system calls over many independent parts (the model walk: a stat per model file,
folder by folder), a second core halves the wait where one is free. The numbers are written into a pipe before
the fork, two bytes each; both processes read them two bytes at a time (a pipe hands each read whole to one
reader) until it is empty, so neither waits on the other while jobs are left, and a child that gets no core
on a busy machine takes few. The child sends its results back (marshal: plain data) and exits; any job it
took and did not deliver (it failed, was killed, or sent something unreadable) is done again here, so the
results are always those of doing every job in this process.

Where: where :func:`fork_rules.fork_refusal` allows a fork (Linux, two CPUs or more, no other thread, not
``COMFYWATCHMAN_FORK_STAGES=0``); elsewhere every job is done here, in the same order.
"""

from __future__ import annotations

import logging
import marshal
import os
import signal
import struct
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, NoReturn

from comfywatchman.fork_rules import fork_refusal, wait_child

logger = logging.getLogger(__name__)

_NUMBER = struct.Struct("=H")
# All the numbers fit in the pipe at once (its buffer holds 64 KiB on Linux; 4 KiB is the least POSIX allows),
# so writing them never waits for a reader.
MAX_JOBS = 4096 // _NUMBER.size


def run_shared(order: Sequence[int], work: Callable[[int], Any]) -> dict[int, Any]:
    """Return ``{number: work(number)}`` for each number of ``order`` (jobs are taken in that order), done by
    this process and, where a fork is allowed, by a forked child at the same time. ``work`` must give plain
    data (what marshal writes) and must not depend on which process runs it."""
    refusal = fork_refusal() if 2 <= len(order) <= MAX_JOBS else "too few or too many jobs to share"
    if refusal is not None:
        logger.debug("jobs done in this process alone: %s", refusal)
        return {number: work(number) for number in order}
    opened: list[int] = []
    try:
        jobs_out, jobs_in = os.pipe()
        opened += [jobs_out, jobs_in]
        results_out, results_in = os.pipe()
        opened += [results_out, results_in]
        os.write(jobs_in, b"".join(_NUMBER.pack(number) for number in order))
        for stream in (sys.stdout, sys.stderr):  # else what they buffered would be written by both processes
            if stream is not None:
                stream.flush()
        pid = os.fork()
    except OSError as exc:  # no memory or process slot for a child: this process does every job
        for fd in opened:
            os.close(fd)
        logger.debug("jobs done in this process alone: %s", exc)
        return {number: work(number) for number in order}
    if pid == 0:  # pragma: no cover - checked by what it sends back
        os.close(results_out)
        _child(jobs_out, jobs_in, results_in, work)
    os.close(results_in)
    os.close(jobs_in)  # the child's copy is closed by the child: the pipe ends when both readers emptied it
    try:
        done = _take(jobs_out, work)
        theirs = _collect(pid, results_out, len(order))
    except BaseException:
        _stop(pid)
        raise
    finally:
        os.close(jobs_out)
        os.close(results_out)
    missing = [number for number in order if number not in done and number not in theirs]
    if missing:
        logger.debug("the child process did not deliver %d job(s); done here", len(missing))
    done.update(theirs)
    done.update((number, work(number)) for number in missing)
    return done


def _take(jobs: int, work: Callable[[int], Any]) -> dict[int, Any]:
    """Do the jobs whose numbers this process takes from the pipe ``jobs`` until it is empty; return their
    results by number."""
    done: dict[int, Any] = {}
    # Non-blocking: the other reader may empty the pipe between a check and a read.
    os.set_blocking(jobs, False)
    while True:
        try:
            taken = os.read(jobs, _NUMBER.size)
        except BlockingIOError:
            return done
        if len(taken) != _NUMBER.size:
            return done
        (number,) = _NUMBER.unpack(taken)
        done[number] = work(number)


def _child(jobs: int, jobs_in: int, results: int, work: Callable[[int], Any]) -> NoReturn:
    """In the forked child: take and do jobs, send their results to ``results`` and end the process; never
    returns into the code that forked it."""
    status = 1
    try:
        os.close(jobs_in)
        for signum in (signal.SIGINT, signal.SIGTERM):  # a stop ends the child; the parent decides the rest
            signal.signal(signum, signal.SIG_DFL)
        view = memoryview(marshal.dumps(_take(jobs, work)))
        while view:
            view = view[os.write(results, view) :]
        status = 0
    finally:
        os._exit(status)


def _collect(pid: int, results: int, count: int) -> dict[int, Any]:
    """Return the results the child ``pid`` sent on ``results`` by job number, once it ended; empty when it
    failed or sent something that is not such a mapping."""
    chunks = []
    while chunk := os.read(results, 1 << 20):
        chunks.append(chunk)
    status = wait_child(pid)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        logger.debug("the child process doing jobs ended with status %d", status)
        return {}
    try:
        theirs = marshal.loads(b"".join(chunks))
    except (EOFError, ValueError, TypeError):
        return {}
    if not isinstance(theirs, dict) or not all(isinstance(n, int) and 0 <= n < count for n in theirs):
        return {}
    return theirs


def _stop(pid: int) -> None:
    """Kill the child ``pid`` and wait for it (interrupted while it works: it must not outlive this process)."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        wait_child(pid)
