"""`make install-cron` with the real `crontab` command: idempotent, removable, and the line really runs."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.comfy_tree import subprocess_env

REPO = Path(__file__).resolve().parents[2]
TAG = "# comfywatchman (make install-cron)"
COMMAND = Path(sys.prefix) / "bin" / "comfywatchman"

pytestmark = pytest.mark.slow


def crontab_lines() -> list[str]:
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return listed.stdout.splitlines() if listed.returncode == 0 else []


@pytest.fixture
def user_crontab() -> Iterator[None]:
    """Skip without a usable `crontab`; otherwise keep the user's crontab and put it back afterwards."""
    if shutil.which("crontab") is None or shutil.which("make") is None:
        pytest.skip("the crontab command is not installed (Debian: apt-get install -y cron)")
    listed = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    if listed.returncode != 0 and "no crontab" not in listed.stderr:
        pytest.skip(f"crontab -l is refused here: {listed.stderr.strip()}")
    saved = listed.stdout if listed.returncode == 0 else None
    try:
        yield
    finally:
        if saved is None:
            subprocess.run(["crontab", "-r"], capture_output=True, check=False)
        else:
            subprocess.run(["crontab", "-"], input=saved, text=True, check=True)


def make(target: str, home: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # -o: never (re)build the venv here; the line only names the command of the venv running the tests.
    return subprocess.run(
        [
            "make",
            "-s",
            "-o",
            f"{sys.prefix}/.runtime-installed",
            target,
            f"VENV={sys.prefix}",
            f"CRON_HOME={home}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_install_cron_leaves_one_line_when_run_twice(user_crontab: None, tmp_path: Path) -> None:
    subprocess.run(["crontab", "-"], input="5 4 * * * echo keep-me\n", text=True, check=True)
    config = tmp_path / "cw.toml"
    # A cron run has no --force: its gate is given inputs that let it run on any machine (the awake check
    # off, no VRAM needed; the GPU it sees is the tests' busy fake).
    config.write_text("[schedule]\nwake_grace_seconds = 0\nmin_vram_gb = 0\n")
    args = f"ARGS=--offline --config {config}"
    for _ in range(2):
        done = make("install-cron", tmp_path, args)
        assert done.returncode == 0, done.stderr
    ours = [line for line in crontab_lines() if TAG in line]
    assert len(ours) == 1, crontab_lines()
    assert "5 4 * * * echo keep-me" in crontab_lines()
    line = ours[0]
    assert line.startswith("0 */2 * * * ") and f'--home "{tmp_path}"' in line and "--run-cycle" in line
    assert (tmp_path / "log").is_dir()  # the log redirect needs it before the first run

    if COMMAND.exists():
        # Run the installed line's command as cron would (sh -c), without waiting two hours.
        command = line.split(" ", 5)[5]
        ran = subprocess.run(
            ["sh", "-c", command],
            env=subprocess_env(tmp_path),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert ran.returncode in (0, 75), (command, ran.stderr)
        assert (tmp_path / "log" / "cron.log").exists()
        record = json.loads((tmp_path / "state" / "cycles.jsonl").read_text().splitlines()[-1])
        assert record["trigger"] == "cron"

    done = make("uninstall-cron", tmp_path)
    assert done.returncode == 0, done.stderr
    assert crontab_lines() == ["5 4 * * * echo keep-me"]


def test_uninstall_cron_succeeds_when_nothing_is_installed(user_crontab: None, tmp_path: Path) -> None:
    subprocess.run(["crontab", "-r"], capture_output=True, check=False)
    assert make("uninstall-cron", tmp_path).returncode == 0
    assert crontab_lines() == []


def test_crontab_example_runs_every_two_hours_and_explains_exit_75() -> None:
    text = (REPO / "crontab.example").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    fields = shlex.split(lines[0].split("#")[0])
    assert fields[:5] == ["0", "*/2", "*", "*", "*"]
    assert any(f.endswith("/.venv/bin/comfywatchman") for f in fields) and "--run-cycle" in fields
    assert ">>" in fields and "--home" in fields
    assert "75" in text and "not an error" in text
