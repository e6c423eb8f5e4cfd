"""Run the real CLI in a subprocess for which file permissions hold, even when the tests run as root.

root ignores ``chmod`` (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a read-only home or an unreadable
workflows folder would look fine to it. The child drops those two capabilities from its bounding set
before it starts Python: it still runs as root, but the kernel checks the permission bits as for anyone.
A user that is not root needs nothing.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.comfy_tree import run_cli, subprocess_env

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2


def _drop_file_capabilities() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))


def _probe() -> bool:
    """Return whether a child with the capabilities dropped really is refused a chmod 000 folder."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        locked = Path(tmp) / "locked"
        locked.mkdir(mode=0)
        try:
            child = subprocess.run(
                [sys.executable, "-c", f"import os; os.listdir({str(locked)!r})"],
                preexec_fn=_drop_file_capabilities,
                capture_output=True,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            locked.chmod(0o700)
        return child.returncode != 0


def permissions_enforcer() -> Callable[[], None] | None:
    """Return the ``preexec_fn`` that makes a child honour file permissions (None: it already does).

    Skips the calling test where permissions cannot be enforced (root without CAP_SETPCAP, not Linux).
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    if not sys.platform.startswith("linux") or not _probe():
        pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE for the child: chmod would not hold")
    return _drop_file_capabilities


def run_cli_unprivileged(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI like ``run_cli``, in a child for which ``chmod`` holds."""
    enforcer = permissions_enforcer()
    if enforcer is None:
        return run_cli(*args, home=home, env=env, timeout=timeout)
    return subprocess.run(
        [sys.executable, "-m", "comfywatchman", *args],
        cwd=home,
        env=subprocess_env(home, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=enforcer,
    )
