"""The process entry point (``python -m comfywatchman`` and the ``comfywatchman`` command)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.comfy_tree import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYWATCHMAN_")}
    env["PYTHONPATH"] = str(REPO / "lib")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_run_returns_the_exit_code_and_leaves_the_collector_on() -> None:
    """run() is cli.main's exit code; the command's modules were imported with the collector paused and are
    frozen out of its walks, and it is on again for the command itself."""
    result = _python(
        "import gc, sys\n"
        "sys.argv = ['comfywatchman']\n"  # nothing to do: usage error, exit code 2
        "seen = []\n"
        "import comfywatchman.cli as cli\n"
        "real = cli.main\n"
        "cli.main = lambda: seen.append((gc.isenabled(), gc.get_freeze_count() > 0)) or real([])\n"
        "from comfywatchman.__main__ import run\n"
        "print(run(), seen, gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "2 [(True, True)] True True"
    assert "nothing to do" in result.stderr


def test_python_dash_m_and_the_command_exit_as_main_says(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMFYWATCHMAN_")}
    env["PYTHONPATH"] = str(REPO / "lib")
    result = subprocess.run(
        [sys.executable, "-m", "comfywatchman", "--list-intake", "-5", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2 and "--list-intake N needs N >= 0" in result.stderr
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["comfywatchman"] == "comfywatchman.__main__:process"  # the command takes the same way in


def test_the_process_ends_with_its_code_after_its_atexit_handlers_and_flushed_output() -> None:
    result = _python(
        "import atexit, sys\n"
        "from comfywatchman.__main__ import exit_with\n"
        "atexit.register(lambda: sys.stdout.write(' and the atexit handler'))\n"
        "sys.stdout.write('buffered output')\n"
        "sys.stderr.write('diagnostics')\n"
        "exit_with(3)\n"
        "print('never reached')\n"
    )
    assert result.returncode == 3
    assert result.stdout == "buffered output and the atexit handler" and result.stderr == "diagnostics"


def test_a_thread_still_running_is_waited_for_as_at_an_ordinary_exit(tmp_path: Path) -> None:
    done = tmp_path / "done"
    result = _python(
        "import threading, time, pathlib\n"
        "from comfywatchman.__main__ import exit_with\n"
        f"path = pathlib.Path({str(done)!r})\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), path.write_text('whole'))).start()\n"
        "exit_with(4)\n"
    )
    assert result.returncode == 4, result.stderr
    assert done.read_text() == "whole"
