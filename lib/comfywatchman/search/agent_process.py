"""Running an agent CLI (the Qwen Code CLI) so that nothing of it outlives its search or sees the user's files.

The CLI starts worker processes of its own. ``run_agent`` starts it as the leader of a process group of its own
(POSIX: a new session; Windows: a new process group, ended with ``taskkill /T``) and ends the whole group, on a
timeout and after a normal exit alike (SIGTERM, then SIGKILL for whatever is left after a grace period), so no
worker keeps calling the LLM endpoint once the search has moved on.

It runs in an empty working folder of its own (its file tools read what the working folder holds, and what
they read goes to the LLM endpoint) with a home of its own in the same temporary folder (``HOME``, the XDG
folders, ``USERPROFILE``/``APPDATA``/``LOCALAPPDATA``, ``TMPDIR``), removed afterwards. The one thing of the
user's home it keeps is the CLI's own configuration folder, ``~/.qwen`` (its settings and login), linked into
the new home when the user has one: without it the CLI cannot authenticate.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

#: Seconds the group gets between SIGTERM and SIGKILL.
GRACE_SECONDS = 2.0
#: The folder of the user's home the CLI keeps (its settings and OAuth login).
CONFIG_DIR = ".qwen"
_HOME_VARS = ("HOME", "USERPROFILE")


def sandbox_env(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """Return ``env`` with every home and temp folder variable pointed into ``home`` (created here), and the
    user's ``~/.qwen`` linked into it when the user has one."""
    out = dict(env)
    user_home = next((env[name] for name in _HOME_VARS if env.get(name)), None)
    folders = {
        "HOME": home,
        "USERPROFILE": home,
        "XDG_CONFIG_HOME": home / ".config",
        "XDG_DATA_HOME": home / ".local" / "share",
        "XDG_CACHE_HOME": home / ".cache",
        "XDG_STATE_HOME": home / ".local" / "state",
        "APPDATA": home / "AppData" / "Roaming",
        "LOCALAPPDATA": home / "AppData" / "Local",
        "TMPDIR": home / "tmp",
        "TEMP": home / "tmp",
        "TMP": home / "tmp",
    }
    for name, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        out[name] = str(folder)
    if user_home:
        config = Path(user_home) / CONFIG_DIR
        if config.is_dir():
            try:
                (home / CONFIG_DIR).symlink_to(config, target_is_directory=True)
            except OSError as exc:  # Windows without the symlink privilege
                logger.warning("the qwen CLI runs without your %s (could not link it: %s)", config, exc)
    return out


def _group_alive(pgid: int) -> bool:
    """Return whether a process of group ``pgid`` still runs. Zombies do not count: a worker whose parent died
    waits for init to reap it, which a container's init may never do (Linux: read from /proc)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def end_group(process: subprocess.Popen[str], grace: float = GRACE_SECONDS) -> None:
    """End ``process`` and every process of its group: SIGTERM, ``grace`` seconds, then SIGKILL (Windows:
    ``taskkill /T /F`` on the tree)."""
    if sys.platform == "win32":
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(process.pid)],
            capture_output=True,
            check=False,
        )
        process.kill()
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    stop = time.monotonic() + grace
    while time.monotonic() < stop:
        process.poll()  # reaps the leader, so a dead leader does not keep the group looking alive
        if not _group_alive(process.pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_agent(
    command: Sequence[str], env: Mapping[str, str], timeout: float, grace: float = GRACE_SECONDS
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` in a process group of its own, an empty working folder and a home of its own; return
    its exit status and output. Raise subprocess.TimeoutExpired after ``timeout`` seconds (the whole group
    ended first) and OSError when it cannot be started. Whatever of its group is left at its exit is ended."""
    import tempfile  # here: the search loads this module in every cycle that searches; few run an agent

    with tempfile.TemporaryDirectory(prefix="comfywatchman-agent-") as scratch:
        work = Path(scratch) / "work"
        work.mkdir()
        child_env = sandbox_env(env, Path(scratch) / "home")
        # A group of its own, so the whole group can be ended: a new process group on Windows, a session elsewhere.
        windows = sys.platform == "win32"
        creationflags = 0
        if sys.platform == "win32":  # pragma: no cover - Windows only
            creationflags = subprocess.CREATE_NEW_PROCESS_GROUP
        process = subprocess.Popen(
            list(command),
            cwd=work,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=not windows,
            creationflags=creationflags,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            end_group(process, grace)
            process.communicate()
            raise
        except BaseException:
            end_group(process, grace)
            raise
        # Workers the CLI left behind would go on calling the endpoint: they end with it.
        end_group(process, grace)
        return subprocess.CompletedProcess(list(command), process.returncode, stdout, stderr)
