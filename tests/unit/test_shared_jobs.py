"""Numbered jobs shared with a forked child: the results are those of doing every job here, whatever the child
does, and where no fork is allowed every job is done here, in order."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import cache_manager, shared_jobs
from comfywatchman.comfy import folders

needs_fork = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="jobs are shared on Linux only")


@pytest.fixture
def allow_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test process may run threads earlier tests left (which a cycle's process does not); the jobs here
    # take no lock and log nothing, so the fork is safe, and the test is about what happens after it.
    monkeypatch.setattr(shared_jobs, "fork_refusal", lambda: None)


def slow_square(number: int) -> tuple[int, int]:
    time.sleep(0.01)  # long enough that both processes take jobs
    return number * number, os.getpid()


@needs_fork
def test_both_processes_take_jobs_and_every_result_is_there(allow_fork: None) -> None:
    done = shared_jobs.run_shared(list(range(40)), slow_square)
    assert sorted(done) == list(range(40))
    assert all(done[n][0] == n * n for n in done)
    workers = {pid for _, pid in done.values()}
    assert os.getpid() in workers and len(workers) == 2


@needs_fork
def test_jobs_a_killed_child_took_are_done_here(allow_fork: None) -> None:
    parent = os.getpid()

    def dies_in_the_child(number: int) -> tuple[int, int]:
        if os.getpid() != parent and number >= 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return slow_square(number)

    done = shared_jobs.run_shared(list(range(20)), dies_in_the_child)
    assert sorted(done) == list(range(20)) and all(done[n][0] == n * n for n in done)
    assert {pid for _, pid in done.values()} == {parent}  # nothing the dead child did came back


@needs_fork
def test_a_child_whose_work_raises_gives_nothing_and_its_jobs_are_done_here(allow_fork: None) -> None:
    parent = os.getpid()

    def fails_in_the_child(number: int) -> tuple[int, int]:
        if os.getpid() != parent:
            raise OSError("a folder the child could not read")
        return slow_square(number)

    done = shared_jobs.run_shared(list(range(10)), fails_in_the_child)
    assert sorted(done) == list(range(10)) and {pid for _, pid in done.values()} == {parent}


def test_where_no_fork_is_allowed_every_job_is_done_here_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared_jobs, "fork_refusal", lambda: "asked to")
    seen: list[int] = []

    def record(number: int) -> int:
        seen.append(number)
        return number

    assert shared_jobs.run_shared([2, 0, 1], record) == {2: 2, 0: 0, 1: 1}
    assert seen == [2, 0, 1]


@needs_fork
def test_the_model_walk_shared_or_not_gives_the_same_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow_fork: None
) -> None:
    root = tmp_path / "ComfyUI"
    for folder, count in (("loras", 30), ("checkpoints", 12), ("vae", 5), ("embeddings", 7)):
        for index in range(count):
            path = root / "models" / folder / f"sub{index % 3}" / "deep" / f"{folder}-{index}.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x" * index)
    (root / "models" / "diffusers" / "pipe").mkdir(parents=True)
    (root / "models" / "diffusers" / "pipe" / "model_index.json").write_text("{}")
    paths = folders.model_paths(root, [])
    limits: list[dict[str, Any]] = []
    shared = cache_manager.scan_model_files(paths, (1, 1000), limits)  # depth 1: "deep" folders not walked
    monkeypatch.setattr(shared_jobs, "fork_refusal", lambda: "asked to")
    alone_limits: list[dict[str, Any]] = []
    assert cache_manager.scan_model_files(paths, (1, 1000), alone_limits) == shared
    assert limits == alone_limits and len(limits) == 4
    assert [f["name"] for f in shared["diffusers"]["files"]] == ["pipe"]
    assert shared["loras"]["files"] == []  # every file is two levels down
    monkeypatch.undo()
    monkeypatch.setattr(shared_jobs, "fork_refusal", lambda: None)
    deep = cache_manager.scan_model_files(paths, (2, 1000), [])
    assert [f["size"] for f in deep["loras"]["files"]] == sorted(range(30), key=lambda i: (i % 3, f"loras-{i}"))
