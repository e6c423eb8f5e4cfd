"""Reading workflows in worker processes: each parses files and lists their requirements, nothing else.

The scan starts ``python -m comfywatchman.workflow.parse_worker`` processes (a fresh interpreter importing only
the reading and extraction code: about 20 MB, whatever the process that starts them holds), sends each its
settings and then one job per line, and reads one framed answer per job, in job order (``Workers.map``).
Comparing with the install stays in the scan's own process, so the workers need neither the model index nor
the node map. A worker exits when its input ends, when the scan's process dies (Linux: the kernel kills it;
elsewhere a watcher notices), or when the scan cannot take its answers any more (a broken pipe).

Answers are ``KIND LENGTH BODY``: KIND one byte, LENGTH four bytes big-endian, BODY that many bytes:
``R`` the requirements (``payload.encode``: what the store keeps) of a file that still has the size intake
saw, ``r`` the same of one whose size changed since, ``E`` the one-line error naming the file, ``N`` why an
image holds no workflow.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import orjson

from comfywatchman.workflow import extract, payload
from comfywatchman.workflow.load import NotAWorkflow, WorkflowError, clean_text, load

logger = logging.getLogger(__name__)

# Linux prctl option: the signal a process gets when the thread that forked it ends.
PR_SET_PDEATHSIG = 1
_HEADER = struct.Struct(">cI")
# Jobs handed to one worker in a row: small, so that the workers stay busy alike whatever the file sizes.
CHUNK = 4
# Answers a worker may write ahead of the scan reading them (pipe capacity; Linux lets a process raise it).
PIPE_BYTES = 1 << 20
# The scan's buffer on each worker's pipes (the answers are kilobytes each; a larger buffer only holds memory).
PIPE_BUFFER = 1 << 16
REQUIREMENTS, CHANGED, ERROR, NOT_WORKFLOW = b"R", b"r", b"E", b"N"
# Not from a worker: its process died before answering; the scan reads the file itself.
LOST = b"L"


def requirements_of(
    path: str,
    loaders: Mapping[str, list[extract.LoaderInput]],
    placeholders: frozenset[str],
    size: int | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, Any] | str, bool]:
    """Return the requirement data of the workflow at ``path`` (format, container, models, nodes), or the
    one-line error naming the file when it cannot be read as a workflow; and whether the file still has
    ``size`` bytes (so what was read is what intake hashed).

    Whatever is wrong with the file ends here as its error, never as an exception (NotAWorkflow excepted:
    an image without a workflow is raised for the caller to count). Files larger than ``max_bytes`` are
    not read.
    """
    try:
        workflow, raw = load(Path(path), max_bytes)
        data = {
            "format": workflow.format,
            "container": workflow.container,
            **extract.extract_json(workflow, loaders, placeholders),
        }
    except NotAWorkflow:
        raise
    except WorkflowError as exc:
        return clean_text(str(exc)), False
    except extract.TooLarge as exc:
        return clean_text(f"{path}: {exc}; not read as a workflow"), False
    except (Exception, RecursionError) as exc:  # a file must never stop the scan of the others
        logger.debug("%s: reading failed:", path, exc_info=True)
        return clean_text(f"{path}: cannot be read as a workflow ({type(exc).__name__}: {exc})"[:2000]), False
    return data, size is None or len(raw) == size


def answer(
    path: str,
    size: int | None,
    loaders: Mapping[str, list[extract.LoaderInput]],
    placeholders: frozenset[str],
    max_bytes: int | None,
) -> tuple[bytes, bytes]:
    """Return the KIND and BODY of the answer for the workflow at ``path`` (see the module's docstring)."""
    try:
        found, whole = requirements_of(path, loaders, placeholders, size, max_bytes)
    except NotAWorkflow as exc:
        return NOT_WORKFLOW, clean_text(str(exc)).encode("utf-8")
    if isinstance(found, str):
        return ERROR, found.encode("utf-8")
    return (REQUIREMENTS if whole else CHANGED), payload.encode(found)


def exit_with_parent(parent: int) -> None:
    """Make this process exit when the process ``parent`` (its pid taken before this one started) dies, so a
    killed cycle leaves no orphans.

    ``os.getppid()`` read here may already be 1 (init) when the cycle was killed just as this process
    started, and a watcher comparing with that would wait forever; ``parent`` is the pid the scan had. On
    Linux the kernel also sends SIGKILL on the parent's death (PR_SET_PDEATHSIG), with no polling.
    """
    if os.getppid() != parent:
        os._exit(1)  # the parent died before this worker got here
    if sys.platform.startswith("linux"):
        import ctypes  # here, not at the top: only a worker needs it, and every scan imports this module

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watcher below still notices
        if os.getppid() != parent:  # died between the check above and the prctl
            os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def serve(source: IO[bytes], sink: IO[bytes]) -> None:
    """Answer the jobs read from ``source`` on ``sink``: the settings line first, then ``[path, size]`` lines.
    A ``source`` that ends before the settings (the scan stopped its workers before handing out any job) is
    no work: nothing is answered."""
    first = source.readline()
    if not first:
        return
    settings = orjson.loads(first)
    loaders = extract.loader_table(settings["loaders"])
    placeholders = frozenset(settings["placeholders"])
    max_bytes = settings["max_bytes"]
    for line in source:
        path, size = orjson.loads(line)
        kind, body = answer(path, size, loaders, placeholders, max_bytes)
        sink.write(_HEADER.pack(kind, len(body)))
        sink.write(body)
        sink.flush()


def main(argv: list[str]) -> int:
    """Run one worker: ``argv[1]`` is the pid of the scan that started it. Return the exit status."""
    exit_with_parent(int(argv[1]))
    # Parsed workflows hold no reference cycles; the cyclic collector would only rescan every object made.
    gc.disable()
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except BrokenPipeError:
        os._exit(1)  # the scan stopped reading (it is gone or gave up): nothing left to flush to it
    return 0


class _Worker:
    """One worker process and the thread that hands it its jobs."""

    def __init__(self, environment: dict[str, str], settings: bytes) -> None:
        import subprocess  # here, not at the top: a worker imports this module and starts no process

        command = [sys.executable, "-m", __name__, str(os.getpid())]
        # On Windows a console program started by a process without a console (Task Scheduler's windowless
        # run) would open a console window of its own for every worker; the flag keeps it hidden.
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        # Pipes read (and written) through a buffer of several answers: the answers a worker wrote ahead are
        # taken in one read, not two or three reads per answer.
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            creationflags=flags,
            bufsize=PIPE_BUFFER,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin: IO[bytes] = self.process.stdin
        self.stdout: IO[bytes] = self.process.stdout
        with contextlib.suppress(ImportError, AttributeError, OSError):  # a larger pipe: the worker runs further ahead
            import fcntl

            fcntl.fcntl(self.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self.settings = settings
        self.jobs: list[bytes] = []
        self.dead = False
        self.feeder: threading.Thread | None = None

    def start_feeding(self) -> None:
        def feed() -> None:
            try:
                self.stdin.write(self.settings)
                for job in self.jobs:
                    self.stdin.write(job)
                self.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass  # the worker died: reading its answers finds out

        self.feeder = threading.Thread(target=feed, name="scan-feeder", daemon=True)
        self.feeder.start()

    def read_answer(self) -> tuple[bytes, bytes]:
        """Return the next answer, or ``LOST`` when the worker died before giving it."""
        if self.dead:
            return LOST, b""
        header = self.stdout.read(_HEADER.size)
        if len(header) == _HEADER.size:
            kind, length = _HEADER.unpack(header)
            body = self.stdout.read(length)
            if len(body) == length:
                return kind, body
        self.dead = True
        logger.warning(
            "scan: a worker process ended early (exit status %s); its files are read here", self.process.poll()
        )
        return LOST, b""

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.stdin.close()
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        with contextlib.suppress(OSError):
            self.stdout.close()


class Workers:
    """Worker processes answering jobs in order (a context manager: leaving it stops them)."""

    def __init__(
        self, count: int, config_loaders: Mapping[str, Any], placeholders: frozenset[str], max_bytes: int | None
    ) -> None:
        settings = orjson.dumps(
            {"loaders": config_loaders, "placeholders": sorted(placeholders), "max_bytes": max_bytes}
        )
        environment = dict(os.environ)
        # The package as this process imported it, wherever that is (a checkout on PYTHONPATH, an install).
        package_root = str(Path(extract.__file__).resolve().parents[2])
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, environment.get("PYTHONPATH")) if p)
        self._workers: list[_Worker] = []
        try:
            for _ in range(count):
                self._workers.append(_Worker(environment, settings + b"\n"))
        except BaseException:
            self.close()
            raise

    def map(self, jobs: list[tuple[str, int | None]]) -> Iterator[tuple[bytes, bytes]]:
        """Yield the answer (KIND, BODY) to each of ``jobs`` (path, size), in order; ``LOST`` for a job whose
        worker died before answering it."""
        count = len(self._workers)
        owners = [(index // CHUNK) % count for index in range(len(jobs))]
        for index, (path, size) in enumerate(jobs):
            self._workers[owners[index]].jobs.append(orjson.dumps([path, size]) + b"\n")
        for worker in self._workers:
            worker.start_feeding()
        for owner in owners:
            yield self._workers[owner].read_answer()

    def close(self) -> None:
        """Stop every worker (killed when it has not finished)."""
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
