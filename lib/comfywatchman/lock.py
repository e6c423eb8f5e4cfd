"""The cycle lock: two cycles (cron, the --scheduler loop, a manual run) never overlap.

The lock is an OS file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows) on ``state/cycle.lock``.
The kernel releases it when its process dies, so a lock left by a crashed cycle is taken over by the next one;
the file also records the holder's pid so the one that is refused can say who holds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, TypeGuard

from comfywatchman.errors import LockHeldError, LockUnusableError

logger = logging.getLogger(__name__)

# sys.platform rather than os.name (the same on CPython): mypy knows msvcrt exists only on win32.
if sys.platform == "win32":  # pragma: no cover - Windows only
    import msvcrt

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(handle: IO[bytes]) -> bool:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _is_pid(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def pid_alive(pid: int) -> bool:
    """Return whether a process with id ``pid`` is running now (a zombie counts as running)."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - Windows only; os.kill(pid, 0) would terminate the process there
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def exclusive(path: Path, timeout: float = 30.0) -> Iterator[None]:
    """Hold an OS lock on ``path`` (created if needed) while the block runs, waiting up to ``timeout``
    seconds for another holder; raise OSError when it is still held then.

    For short critical sections (one append to a JSON-lines file). Like the cycle lock, the kernel frees it
    when its holder dies, so a killed writer never leaves it taken.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with open(path, "a+b") as handle:
        while not _try_lock(handle):
            if time.monotonic() > deadline:
                raise OSError(f"{path}: still locked by another process after {timeout:g} s")
            time.sleep(0.005)
        _HELD.add(handle)
        try:
            yield
        finally:
            _HELD.discard(handle)
            _unlock(handle)


def read_holder(path: Path) -> dict[str, object]:
    """Return what the lock file says about its last holder (empty if unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def probe_held(path: Path) -> bool:
    """Return whether some process holds the lock at ``path`` now, without taking it for long or writing."""
    if not path.exists():
        return False
    try:
        # Append mode: opening never truncates the holder's record.
        with open(path, "a+b") as handle:
            if not _try_lock(handle):
                return True
            _unlock(handle)
            return False
    except OSError:
        return False


# Lock files held by this process. A forked child (the scan's worker processes) inherits their descriptors,
# and a flock lives as long as any descriptor of it is open: were the cycle killed, orphaned workers would
# keep the lock and every later cycle would skip. Children close their copies at once (the parent keeps its
# lock: closing a duplicate does not unlock).
_HELD: set[IO[bytes]] = set()


def _close_inherited_locks() -> None:
    for handle in list(_HELD):
        try:
            handle.close()
        except OSError as exc:  # nothing to do about it in a fresh child; the lock stays the parent's
            logger.debug("closing an inherited lock file failed: %s", exc)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class CycleLock:
    """Context manager holding the lock at ``path``; raises LockHeldError if another process holds it."""

    def __init__(self, path: Path, purpose: str = "cycle") -> None:
        self.path = path
        self.purpose = purpose
        self._handle: IO[bytes] | None = None
        self.took_over_from: int | None = None

    @property
    def held(self) -> bool:
        """Return whether this object holds the lock now."""
        return self._handle is not None

    def acquire(self) -> None:
        """Take the lock or raise LockHeldError naming the pid that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(self.path, "a+b")  # noqa: SIM115 - kept open while the lock is held; closed in release()
        except OSError as exc:
            raise LockUnusableError(str(self.path), exc.strerror or str(exc)) from None
        if not _try_lock(handle):
            handle.close()
            pid = read_holder(self.path).get("pid")
            raise LockHeldError(str(self.path), pid if _is_pid(pid) else None)
        previous = read_holder(self.path)
        pid = previous.get("pid")
        # Whatever else is in the file (another program's, garbage) is not a holder of ours: overwritten below.
        if _is_pid(pid) and pid != os.getpid() and not previous.get("released"):
            # The kernel freed the lock, so its holder died without releasing it: say so and carry on.
            self.took_over_from = pid
            logger.warning(
                "%s: taking over a lock left by pid %s, which is no longer running", self.path, previous["pid"]
            )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "purpose": self.purpose,
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(record).encode())
        handle.flush()
        os.fsync(handle.fileno())
        self._handle = handle
        _HELD.add(handle)

    def release(self) -> None:
        """Release the lock (idempotent), marking the file so the next holder knows it was a clean exit."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        _HELD.discard(handle)
        try:
            record = read_holder(self.path)
            record["released"] = True
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(record).encode())
            handle.flush()
            _unlock(handle)
        finally:
            handle.close()

    def __enter__(self) -> CycleLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
