"""`make clean` removes build leftovers only; `make clean-data` is the explicit way to delete user data."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """Return a folder holding the Makefile, a fake venv and build leftovers, and a home's user data."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    for folder in (".venv/bin", ".ruff_cache", "lib/pkg/__pycache__", "state", "output/reports/status", "log"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "state" / "intake_log.jsonl").write_text('{"kind": "new"}\n')
    (tmp_path / "output" / "reports" / "status" / "master_status.md").write_text("# report\n")
    (tmp_path / "log" / "cron.log").write_text("a line\n")
    return tmp_path


def _make(target: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-s", target], cwd=folder, capture_output=True, text=True, timeout=60, check=False)


def test_make_clean_keeps_state_output_and_log(checkout: Path) -> None:
    result = _make("clean", checkout)
    assert result.returncode == 0, result.stderr
    assert not (checkout / ".venv").exists() and not (checkout / ".ruff_cache").exists()
    assert not (checkout / "lib" / "pkg" / "__pycache__").exists()
    assert (checkout / "state" / "intake_log.jsonl").read_text() == '{"kind": "new"}\n'
    assert (checkout / "output" / "reports" / "status" / "master_status.md").is_file()
    assert (checkout / "log" / "cron.log").is_file()


def test_make_clean_data_says_what_it_deletes_and_deletes_it(checkout: Path) -> None:
    result = _make("clean-data", checkout)
    assert result.returncode == 0, result.stderr
    assert f"deleting {checkout}/state" in result.stdout and "output" in result.stdout and "log" in result.stdout
    assert not any((checkout / name).exists() for name in ("state", "output", "log"))
    assert (checkout / ".venv").is_dir()
