"""Two stages that share no file, run at the same time: one in a forked child process, one in this process.

The cycle's cache and intake stages read and write disjoint files (see the catalogue) and each keeps one core
busy for a while; side by side they take the longer one's time instead of the sum. The child runs its stage's
work and nothing else. What a stage run leaves besides its files (its outcome, its log records, the files and
folders waiting for the cycle's closing flush in ``artifacts.deferred_syncs``) comes back through a pipe, and
this process records both runs in the order of the stages, exactly as :func:`stage_runner.run_stage` does: the
diagnostics on stderr, ``state/runs/<stage>.json`` and the structured log are written by this process alone,
so no line of the two stages interleaves and their order is the order they have when run one after the other.

Where: where ``fork_rules.fork_refusal`` allows a fork (Linux, two CPUs or more, no other thread, not
``COMFYWATCHMAN_FORK_STAGES=0``); elsewhere the stages run one after the other with the same results.

A child that crashes, is killed, or does not finish within ``CHILD_TIMEOUT_S`` (it is then killed) becomes a
failed outcome of its stage with one line saying so; the cycle goes on as after any failed stage.

Stages after both may run ahead, in this process, while the child still runs (``ahead``): stages that read of
the child's stage only files that stage rewrites when what they hold changed (the catalogue says which), and
nothing of the cycle's own records. Each starts only while the child has not answered; where they find those files
as they were when the first started, once the child has ended, their runs stand: they read what they would have
read after the child. Where the child rewrote one of them meanwhile, they run again, in order, after the child, and
the runs ahead are dropped (their files written again, their log records never written). In a cycle where the
install did not change (most cycles), the scan, the search and the verify thus run while the cache stage walks the
model folders, on the core intake has left.

Two stages where the second reads of what the first writes only a part that a function can sum up (the verify
reads of the search's files only the FOUND answers and the queue's tasks) run at once too (``run_beside``): the
second in a forked child, the first here. The child's run stands when the first stage left that sum as it was;
else the second runs again here, after the first.
"""

from __future__ import annotations

import logging
import marshal
import os
import select
import signal
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from comfywatchman import artifacts, catalogue, file_identity, logsetup
from comfywatchman.fork_rules import fork_refusal, wait_child
from comfywatchman.stage_runner import execute_stage, record_stage_run, run_stage
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger(__name__)

# A child still running this long after it was forked is taken to hang, and killed. The cache stage of an
# install of 80,000 model files takes about a second; a model library on a slow network drive may take minutes.
CHILD_TIMEOUT_S = 600.0
# The child's answer: its length (8 bytes, big-endian), then a marshal of plain data (marshal is built in: no
# import, and this process reads the answer while the cycle waits).
_LENGTH = struct.Struct(">Q")
# The child's exit status when it could not send its answer (EX_SOFTWARE).
_NO_ANSWER = 70
_FORMATTER = logging.Formatter()
# Children that sent their whole answer and have not been waited for yet (see _collect).
_UNREAPED: list[int] = []


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class _Run:
    """One stage run waiting to be recorded: what ``execute_stage`` returned, the log records it emitted (as
    ``LogRecord.__dict__``), and the files and folders its writes left for the closing flush."""

    __slots__ = ("files", "finished", "folders", "lost", "outcome", "records", "started")

    outcome: StageOutcome
    started: datetime
    finished: datetime
    records: list[dict[str, Any]]
    files: list[str]
    folders: list[str]
    lost: bool  # no run came back from the child (it crashed, was killed or ran out of time)

    def __init__(
        self,
        outcome: StageOutcome,
        started: datetime,
        finished: datetime,
        records: list[dict[str, Any]] | None = None,
        files: list[str] | None = None,
        folders: list[str] | None = None,
        lost: bool = False,
    ) -> None:
        self.outcome, self.started, self.finished = outcome, started, finished
        self.records = [] if records is None else records
        self.files = [] if files is None else files
        self.folders = [] if folders is None else folders
        self.lost = lost


def run_side_by_side(
    names: tuple[str, str],
    ctx: StageContext,
    *,
    fork: bool = True,
    timeout_s: float = CHILD_TIMEOUT_S,
    meanwhile: Callable[[StageOutcome], object] | None = None,
    ahead: Callable[[StageOutcome], tuple[str, ...]] | None = None,
) -> list[StageOutcome]:
    """Run the two stages ``names``, which must share no file, and return their outcomes in that order.

    The first runs in a forked child while this process runs the second, when ``fork`` and
    :func:`fork_refusal` allow; else they run one after the other (:func:`stage_runner.run_stage`). Either
    way each run is recorded (stderr, ``state/runs``, the structured log) in the order of ``names``, and the
    files written are the same. A child that has not ended ``timeout_s`` seconds after it was forked is
    killed. ``meanwhile`` is called with the second stage's outcome when this process has run it and would only
    wait for the child (not when the stages run one after the other: nothing waits then). ``ahead``, called
    then too, names the stages to run in that wait, in order (see the module's notes); the outcomes of those that
    ran follow the two (the caller runs the others)."""
    refusal = fork_refusal() if fork else "asked to run them one after the other"
    if refusal is not None:
        logger.debug("stages %s run one after the other: %s", " and ".join(names), refusal)
        return [run_stage(name, ctx) for name in names]
    _reap(block=True)  # a child of an earlier cycle of this process (the --scheduler loop)
    first, second = names
    forked_at, deadline = ctx.now(), time.monotonic() + timeout_s
    try:
        pid, answer = _fork_child(first, ctx)
    except OSError as exc:  # no memory or process slot for a child: the stages still run
        logger.warning("stages %s run one after the other: cannot fork: %s", " and ".join(names), exc)
        return [run_stage(name, ctx) for name in names]
    logger.debug("stage %s runs in process %d beside this one, which runs stage %s", first, pid, second)
    early: _Ahead | None = None
    try:
        mine = _run_capturing(second, ctx)
        if meanwhile is not None:
            meanwhile(mine.outcome)
        wanted = ahead(mine.outcome) if ahead is not None else ()
        if wanted:
            early = _run_ahead(wanted, first, ctx, answer)
        theirs = _collect(first, ctx, pid, answer, deadline, forked_at, timeout_s)
    except BaseException:
        # Interrupted (Ctrl-C, a second stop signal): the child must not outlive this process's cycle.
        _stop(pid)
        raise
    finally:
        os.close(answer)
    outcomes = [_record(first, ctx, theirs), _record(second, ctx, mine)]
    artifacts.defer_paths(theirs.files, theirs.folders)
    _reap(block=False)  # it has ended by now, most often; else the next call waits for it
    if early is not None:
        outcomes += _after_the_child(first, ctx, early)
    return outcomes


def run_beside(
    first: str,
    second: str,
    ctx: StageContext,
    basis: Callable[[], object],
    *,
    timeout_s: float = CHILD_TIMEOUT_S,
) -> list[StageOutcome] | None:
    """Run stage ``second`` in a forked child while this process runs stage ``first``, when ``second`` reads of
    what ``first`` writes only what ``basis`` sums up; return their outcomes in that order, or None where no
    fork is allowed (``fork_refusal``; the caller then runs them one after the other).

    The child's run stands when ``basis()`` is the same after ``first`` ran as before it: ``second`` then read
    what it would have read after ``first`` (whichever of the old and the new file it met). Else, or when the
    child brought no run back (it crashed, was killed, or ran past ``timeout_s`` seconds), ``second`` runs
    again here, after ``first``, its files written anew. Both runs are recorded in this process, ``first``'s
    first, as one after the other."""
    refusal = fork_refusal()
    if refusal is not None:
        logger.debug("stages %s and %s run one after the other: %s", first, second, refusal)
        return None
    forked_at, deadline = ctx.now(), time.monotonic() + timeout_s
    try:
        pid, answer = _fork_child(second, ctx)
    except OSError as exc:  # no memory or process slot for a child: one after the other
        logger.debug("stages %s and %s run one after the other: cannot fork: %s", first, second, exc)
        return None
    logger.debug("stage %s runs in process %d beside this one, which runs stage %s", second, pid, first)
    try:
        # Taken here, not before the fork: the child starts its stage the sooner, and nothing has run ``first``.
        before = _basis(basis)
        outcomes = [run_stage(first, ctx)]
        after = _basis(basis)
        theirs = _collect(second, ctx, pid, answer, deadline, forked_at, timeout_s)
    except BaseException:
        _stop(pid)  # interrupted: the child must not outlive this process's cycle
        raise
    finally:
        os.close(answer)
    _reap(block=False)
    if before is None or after != before or theirs.lost:
        why = (
            "its process brought no run back"
            if theirs.lost
            else ("what it reads could not be summed up" if before is None else f"stage {first} changed what it reads")
        )
        logger.debug("stage %s runs again: %s", second, why)
        outcomes.append(run_stage(second, ctx))
        return outcomes
    artifacts.defer_paths(theirs.files, theirs.folders)
    outcomes.append(_record(second, ctx, theirs))
    return outcomes


class _Ahead:
    """Stages run ahead (``_run_ahead``): their runs in order, not yet recorded, and the identity of each file of
    the child's stage they read, taken before the first started."""

    __slots__ = ("before", "files", "runs")

    runs: list[tuple[str, _Run]]
    files: list[Path]
    before: list[list[int] | None]

    def __init__(self, runs: list[tuple[str, _Run]], files: list[Path], before: list[list[int] | None]) -> None:
        self.runs, self.files, self.before = runs, files, before


def _basis(basis: Callable[[], object]) -> object | None:
    """Return ``basis()``, or None when it fails (logged at debug): a run beside made without one never stands,
    and what only speeds a cycle up never stops it."""
    try:
        return basis()
    except Exception as exc:
        logger.debug("the basis of a run beside not taken: %s", exc)
        return None


def _run_ahead(names: tuple[str, ...], first: str, ctx: StageContext, answer: int) -> _Ahead | None:
    """Run the stages ``names`` in order now, while the child runs stage ``first``, each only while the child has
    not answered (after it, nothing is gained: they run after, as usual); return their runs, or None when none
    ran (the child had answered, or a file of ``first`` they read is not there yet: a first cycle, whose runs
    would be made again)."""
    files = [catalogue.path(ctx.config, item.key) for item in catalogue.ARTIFACTS if _feeds(item, first, names)]
    before = [file_identity.of(path) for path in files]
    if None in before:
        return None
    runs: list[tuple[str, _Run]] = []
    for name in names:
        if _answered(answer):
            break
        logger.debug("stage %s runs ahead, while stage %s runs in its process", name, first)
        runs.append((name, _run_capturing(name, ctx)))
    return _Ahead(runs, files, before) if runs else None


def _feeds(item: catalogue.Artifact, writer: str, readers: tuple[str, ...]) -> bool:
    """Return whether ``item`` is a file stage ``writer`` writes and one of the stages ``readers`` reads."""
    return writer in item.writers and any(reader in item.readers for reader in readers)


def _after_the_child(first: str, ctx: StageContext, early: _Ahead) -> list[StageOutcome]:
    """Record the runs ahead when the child left every file they read as they found them; else run their stages
    again, in order (the runs ahead dropped); return the outcomes recorded."""
    changed = [str(path) for path, was in zip(early.files, early.before, strict=True) if file_identity.of(path) != was]
    if not changed:
        return [_record(name, ctx, run) for name, run in early.runs]
    names = [name for name, _run in early.runs]
    logger.debug("stages %s run again: stage %s rewrote %s", ", ".join(names), first, ", ".join(changed))
    return [run_stage(name, ctx) for name in names]


def _answered(answer: int) -> bool:
    """Return whether the child has started its answer (or ended) on the pipe ``answer``: it is done with its
    stage."""
    poller = select.poll()
    poller.register(answer, select.POLLIN)
    return bool(poller.poll(0))


def _fork_child(name: str, ctx: StageContext) -> tuple[int, int]:
    """Fork a child that runs stage ``name`` and sends its run back; return its pid and the pipe to read."""
    # Buffered output written before the fork would otherwise be written twice, once by each process.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        raise
    if pid == 0:  # pragma: no cover - the child's run is checked by the outcome it sends back
        os.close(read_end)
        _child(name, ctx, write_end)
    os.close(write_end)
    return pid, read_end


def _child(name: str, ctx: StageContext, answer: int) -> NoReturn:
    """Run stage ``name`` in the forked child, send its run to ``answer`` and end the process; never returns
    into the code that forked it (no atexit handlers, no unwinding of the parent's ``finally`` blocks)."""
    status = _NO_ANSWER
    try:
        # Ctrl-C and stop signals end the child; the parent decides what they mean for the cycle.
        for signum in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            if signum is not None and callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        run = _run_capturing(name, ctx)
        run.files, run.folders = artifacts.deferred_paths()
        _send(answer, _encode(run))
        status = 0
    except BaseException as exc:  # anything at all: the parent turns it into a failed stage
        with suppress(BaseException):  # the pipe is gone: the parent sees no answer and says so
            _send(answer, marshal.dumps({"error": f"{type(exc).__name__}: {exc}"}))
    finally:
        try:
            for stream in (sys.stdout, sys.stderr):  # the child's own writes only: flushed before the fork
                if stream is not None:
                    stream.flush()
        finally:
            os._exit(status)


class _Capture(logging.Handler):
    """Keeps the records a stage emits, ready to cross a pipe, to be handed to the real handlers later."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            record.exc_text = record.exc_text or _FORMATTER.formatException(record.exc_info)
            record.exc_info = None
        self.records.append(dict(record.__dict__))


@contextmanager
def _capturing() -> Iterator[_Capture]:
    """Send every log record to a _Capture instead of the root logger's handlers for the block."""
    root = logging.getLogger()
    saved = root.handlers[:]
    capture = _Capture()
    root.handlers[:] = [capture]
    try:
        yield capture
    finally:
        root.handlers[:] = saved


def _run_capturing(name: str, ctx: StageContext) -> _Run:
    """Run stage ``name`` with its log records held back; return the run, not yet recorded."""
    with _capturing() as capture:
        started, outcome, finished = execute_stage(name, ctx)
    return _Run(outcome, started, finished, capture.records)


def _record(name: str, ctx: StageContext, run: _Run) -> StageOutcome:
    """Write ``run``'s log records and record it as ``run_stage`` would have; return its outcome."""
    logsetup.begin_stage(name)
    for values in run.records:
        record = logging.makeLogRecord(values)
        logging.getLogger(record.name).handle(record)
    return record_stage_run(name, ctx, run.outcome, run.started, run.finished)


def _encode(run: _Run) -> bytes:
    """Return ``run`` as the bytes the child sends (``_decode`` reads them back)."""
    document = {
        "outcome": asdict(run.outcome),
        "started": run.started.isoformat(),
        "finished": run.finished.isoformat(),
        "records": [_plain_record(values) for values in run.records],
        "files": run.files,
        "folders": run.folders,
    }
    return marshal.dumps(document)


def _plain_record(values: dict[str, Any]) -> dict[str, Any]:
    """Return a log record's values as marshal can write them: values that are not plain data dropped, and
    the message made text when it or its arguments are not plain data."""
    plain = {key: value for key, value in values.items() if _is_plain(value)}
    if "msg" not in plain or "args" not in plain:
        try:
            text = logging.makeLogRecord(values).getMessage()
        except Exception:  # arguments that do not fit the message: logging would say so; keep the template
            text = str(values.get("msg"))
        plain["msg"], plain["args"] = text, None
    return plain


def _is_plain(value: Any) -> bool:
    try:
        marshal.dumps(value)
    except ValueError:
        return False
    return True


def _decode(data: bytes) -> _Run | str:
    """Return the run the child sent as ``data``, or the one line it sent instead saying why it has none
    (ValueError, KeyError, TypeError or EOFError when ``data`` is neither)."""
    document = marshal.loads(data)
    if "error" in document:
        return str(document["error"])
    return _Run(
        StageOutcome(**document["outcome"]),
        datetime.fromisoformat(document["started"]),
        datetime.fromisoformat(document["finished"]),
        document["records"],
        document["files"],
        document["folders"],
    )


def _send(fd: int, body: bytes) -> None:
    """Write ``body`` with its length in front to ``fd``, whole, and close it."""
    view = memoryview(_LENGTH.pack(len(body)) + body)
    try:
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read_answer(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Read ``fd`` until its end; return what was read and whether ``deadline`` (``time.monotonic``) passed
    first."""
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        wait_ms = max(0, int((deadline - time.monotonic()) * 1000))
        if not poller.poll(wait_ms):
            return b"".join(chunks), True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def _collect(
    name: str, ctx: StageContext, pid: int, answer: int, deadline: float, forked_at: datetime, timeout_s: float
) -> _Run:
    """Wait for the answer of the child ``pid`` running stage ``name`` and return its run: the one it sent, or
    a failed outcome with one line when it crashed, was killed or did not end by ``deadline`` (it is killed
    then). A child that answered is left to end on its own (:func:`_reap`): tearing its memory down takes
    milliseconds this process need not wait for."""
    data, late = _read_answer(answer, deadline)
    if late:
        _stop(pid)
        return _failed(name, ctx, pid, forked_at, f"did not finish within {timeout_s:g} s and was killed")
    if len(data) >= _LENGTH.size and _LENGTH.unpack_from(data)[0] == len(data) - _LENGTH.size:
        _UNREAPED.append(pid)
        try:
            run = _decode(data[_LENGTH.size :])
        except (ValueError, KeyError, TypeError, EOFError) as exc:
            return _failed(name, ctx, pid, forked_at, f"sent an answer that cannot be read ({exc})")
        if isinstance(run, str):
            return _failed(name, ctx, pid, forked_at, f"failed: {run}")
        # Started when this process started it, before the stage it runs itself: the order of the runs'
        # started_at is the order of the stages, as one after the other.
        run.started = forked_at
        return run
    status = wait_child(pid)
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        return _failed(name, ctx, pid, forked_at, f"was killed by signal {_signal_name(signum)} before it finished")
    code = os.waitstatus_to_exitcode(status)
    return _failed(name, ctx, pid, forked_at, f"ended with exit code {code} before it finished")


def reap() -> None:
    """Collect the exit of every child that answered and has not been collected yet (the end of a cycle): none
    stays a zombie, and its CPU time counts in this process's children's usage (``time``, ``wait4``)."""
    _reap(block=True)


def _reap(block: bool) -> None:
    """Collect the exit of the children that answered, so none stays a zombie; with ``block``, kill those that
    have not ended yet (their answer is in: nothing of theirs is left to do) and wait for them."""
    for pid in list(_UNREAPED):
        if block:
            _stop(pid)
            continue
        try:
            done = os.waitpid(pid, os.WNOHANG)[0] == pid
        except ChildProcessError:  # already collected
            done = True
        if done:
            _UNREAPED.remove(pid)


def _failed(name: str, ctx: StageContext, pid: int, forked_at: datetime, what: str) -> _Run:
    """Return the run of stage ``name`` whose process ``pid`` failed as ``what`` says."""
    outcome = StageOutcome(name)
    outcome.fail(f"stage {name}: its process (pid {pid}) {what}")
    return _Run(outcome, forked_at, ctx.now(), lost=True)


def _signal_name(signum: int) -> str:
    try:
        return f"{signal.Signals(signum).name} ({signum})"
    except ValueError:
        return str(signum)


def _stop(pid: int) -> None:
    """Kill the child ``pid`` and wait for it to end (its pid is free for another process after that)."""
    if pid in _UNREAPED:
        _UNREAPED.remove(pid)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        wait_child(pid)
