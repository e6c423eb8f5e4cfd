"""The runner: outcomes recorded per task, failures final until approved again, dry runs touch nothing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.download import runner
from comfywatchman.download.fetch import DownloadFailed
from comfywatchman.download.paths import target_for
from comfywatchman.download.state import DownloadState, task_id
from comfywatchman.download.tasks import Task
from tests.fakes.byte_server import ByteServer
from tests.helpers.model_files import safetensors_bytes, sha

DATA = safetensors_bytes(100_000)
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _task(url: str, name: str = "x.safetensors", sha256: str | None = None) -> Task:
    item = {"name": name, "folder": "loras", "target_path": None, "url": url, "sha256": sha256, "size": None,
            "source": "declared", "evidence": "declared", "status": "pending_review", "requires_review": True,
            "blocks_workflows": 1}  # fmt: skip
    return Task(task_id("loras", name, url), item, ("w.json",), None)


def test_outcomes_are_recorded_and_dry_run_does_nothing(
    server: ByteServer, make_downloader: Any, models: Path, tmp_path: Path
) -> None:
    good = _task(server.add("/good", DATA), sha256=sha(DATA))
    gone = _task(server.url + "/gone", name="gone.safetensors")
    evil = _task(server.url + "/good", name="../evil.safetensors")
    cache = {"folders": {"loras": {"paths": [str(models / "loras")], "files": []}}}
    planned = runner.plan([good, gone, evil], cache, auto=True, trusted_hosts=["127.0.0.1"])
    state = DownloadState(tmp_path / "state")

    dry = runner.run(planned, make_downloader(), state, lambda: NOW, dry_run=True)
    assert len(dry.lines) == 3 and all(line.startswith("would download") for line in dry.lines)
    assert server.count == 0 and not state.path.exists()

    totals = runner.run(planned, make_downloader(), state, lambda: NOW)
    assert (totals.done, totals.failed, totals.deferred) == (1, 2, 0)
    records = state.read()
    assert records[good.id]["outcome"]["status"] == "done" and records[good.id]["approved_by"] == "policy"
    assert "HTTP 404" in records[gone.id]["outcome"]["reason"]
    assert "no safe place" in records[evil.id]["outcome"]["reason"]
    assert not (models / "evil.safetensors").exists()
    assert "1 downloaded" in totals.summary() and "2 failed" in totals.summary()

    # A failed task waits for a new approval; the done one stays done.
    reloaded = [Task(t.id, t.item, t.workflows, state.read()[t.id]) for t in (good, gone)]
    again = runner.plan(reloaded, cache, auto=True, trusted_hosts=["127.0.0.1"])
    assert [decision.run for _t, decision, _x in again] == [False, False]


def test_one_file_wanted_under_two_names_is_downloaded_once(
    server: ByteServer, make_downloader: Any, models: Path, tmp_path: Path
) -> None:
    url = server.add("/same", DATA)
    first = _task(url, "x.safetensors", sha(DATA))
    second = _task(url, "SDXL/x.safetensors", sha(DATA).upper())
    cache = {"folders": {"loras": {"paths": [str(models / "loras")], "files": []}}}
    planned = runner.plan([first, second], cache, auto=True, trusted_hosts=["127.0.0.1"])
    state = DownloadState(tmp_path / "state")
    totals = runner.run(planned, make_downloader(), state, lambda: NOW)
    assert server.count == 1 and totals.done == 2
    assert (models / "loras" / "x.safetensors").read_bytes() == (
        models / "loras" / "SDXL" / "x.safetensors"
    ).read_bytes()
    assert state.read()[second.id]["outcome"]["status"] == "copied"
    assert [p.name for p in models.rglob("*.part")] == []


def test_a_local_copy_is_verified_like_a_download(make_downloader: Any, models: Path, tmp_path: Path) -> None:
    source = tmp_path / "source.safetensors"
    source.write_bytes(DATA[:-1] + b"!")  # changed on disk since it was verified
    with pytest.raises(DownloadFailed, match="SHA256 mismatch"):
        make_downloader().copy_local(source, target_for([str(models / "loras")], "y.safetensors"), sha(DATA), None)
    assert list((models / "loras").iterdir()) == []
