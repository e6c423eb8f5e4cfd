"""A downloader killed midway (SIGKILL, no chance to clean up): no partial file is ever taken for a model, and
the next run resumes from where the part file stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman import artifacts
from tests.fakes import wait_until
from tests.fakes.byte_server import ByteServer
from tests.fakes.hf_server import FakeHub, Repo
from tests.helpers.comfy_tree import ComfyTree, run_cli, subprocess_env, ui_node, ui_workflow
from tests.helpers.model_files import safetensors_bytes, sha

pytestmark = pytest.mark.slow

DATA = safetensors_bytes(24 * 1024 * 1024)


def test_a_killed_download_leaves_no_model_and_the_next_run_resumes(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    declared = {"name": "big.safetensors", "url": "https://huggingface.co/org/r/resolve/main/big.safetensors",
                "directory": "checkpoints", "hash": sha(DATA), "hash_type": "SHA256"}  # fmt: skip
    comfy_tree.workflow("w.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["big.safetensors"],
                                                       properties={"models": [declared]})]))  # fmt: skip
    with ByteServer() as cdn, FakeHub([Repo("org/r", {"big.safetensors": (len(DATA), sha(DATA))})]) as hub:
        cdn.add(f"/{sha(DATA)}", DATA)
        hub.cdn = cdn.url
        config = tmp_path / "config.toml"
        config.write_text(f'[search]\nbackend_order = []\n[huggingface]\nendpoint = "{hub.url}"\n'
                          "[download]\nmin_free_mb = 0\nbackoff_max_seconds = 0.0\n")  # fmt: skip
        common = ["--config", str(config), "--comfyui-root", str(comfy_tree.root)]
        assert run_cli("--run-cycle", "--force", *common, home=home).returncode == 0
        assert run_cli("--approve-proven", *common, home=home).returncode == 0

        cdn.fail(f"/{sha(DATA)}", ("drip", 0.005))
        child = subprocess.Popen(
            [sys.executable, "-m", "comfywatchman", "--download", *common],
            cwd=home, env=subprocess_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        folder = comfy_tree.root / "models" / "checkpoints"
        parts = lambda: list(folder.glob("big.safetensors.*.part"))  # noqa: E731
        try:
            assert wait_until(lambda: bool(parts()) and parts()[0].stat().st_size > 2 * 1024 * 1024, timeout=30)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        assert not (folder / "big.safetensors").exists()
        cut_at = parts()[0].stat().st_size
        assert 0 < cut_at < len(DATA)

        # The cache and the scan never take the part file for a model: the workflow is still missing it.
        assert run_cli("--stage", "cache", *common, home=home).returncode == 0
        cache = artifacts.read(home / "state" / "model_cache.json", "model_cache")
        assert cache["folders"]["checkpoints"]["files"] == []

        resumed = run_cli("--download", *common, home=home)
        assert resumed.returncode == 0, resumed.stderr
        assert cdn.requests[-1].headers["Range"] == f"bytes={cut_at}-"
        assert "% (" in resumed.stderr  # the 10% progress lines of a run without a terminal
    assert (folder / "big.safetensors").read_bytes() == DATA and not parts()
    assert run_cli("--run-cycle", "--force", *common, home=home).returncode == 0
    report = artifacts.read(home / "output" / "reports" / "status" / "master_status.json", "master_status")
    assert report["workflows"][0]["readiness"] == "ready"
