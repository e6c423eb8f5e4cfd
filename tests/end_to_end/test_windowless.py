"""``comfywatchmanw`` (Task Scheduler's command) without a console: its output goes to the home's log/task.log."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman import artifacts
from comfywatchman.config import UserDirs
from comfywatchman.windowless import log_path
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow

pytestmark = pytest.mark.slow


def _without_console() -> None:
    # What pythonw gives a program: no stdout, no stderr (Python sets sys.stdout and sys.stderr to None).
    os.close(1)
    os.close(2)


def test_without_a_console_the_output_goes_to_the_homes_task_log(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    comfy_tree.workflow("w.json", ui_workflow([ui_node(1, "LoraLoader", ["absent.safetensors", 1, 1])]))
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYWATCHMAN_"))}
    code = "import sys; from comfywatchman.windowless import main; sys.exit(main())"
    args = ["--run-cycle", "--force", "--offline", "--home", str(home), "--trigger", "task-scheduler"]
    result = subprocess.run(
        [sys.executable, "-c", code, *args, "--comfyui-root", str(comfy_tree.root)],
        cwd=tmp_path,  # not the home: the log follows --home
        env=environment,
        preexec_fn=_without_console,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    lines = (home / "log" / "task.log").read_text(encoding="utf-8").splitlines()
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ", line) for line in lines), lines
    assert any("intake: 1 workflows" in line for line in lines)
    assert lines[-1].endswith("master_status.md")
    cycles = list(artifacts.read_jsonl(home / "state" / "cycles.jsonl", "cycle"))
    assert cycles[-1]["trigger"] == "task-scheduler"


def test_the_log_follows_the_home_the_command_line_or_environment_names(tmp_path: Path) -> None:
    assert log_path(["--run-cycle", "--home", str(tmp_path / "h")], {}, tmp_path) == tmp_path / "h" / "log" / "task.log"
    assert log_path(["--run-cycle"], {"COMFYWATCHMAN_HOME": "/srv/cw"}, tmp_path) == Path("/srv/cw/log/task.log")
    # No home named: the installed tool's default home, the user's data folder (tasks.xml names one).
    assert log_path(["--run-cycle"], {}, tmp_path) == UserDirs.for_user().data / "log" / "task.log"
    assert log_path(["--no-such-option"], {}, tmp_path) == UserDirs.for_user().data / "log" / "task.log"
