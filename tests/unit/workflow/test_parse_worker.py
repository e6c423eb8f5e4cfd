"""Worker processes that read workflows: answers in job order, and what happens when one dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from comfywatchman import resources
from comfywatchman.workflow import extract, parse_worker
from tests.unit.workflow.test_images import png, text

DEFAULTS = tomllib.loads(resources.DEFAULT_CONFIG.read_text(encoding="utf-8"))["scan"]
LOADERS = extract.loader_table(DEFAULTS["loaders"])
PLACEHOLDERS = frozenset(v.casefold() for v in DEFAULTS["placeholder_values"])


def _files(folder: Path) -> list[tuple[str, int | None]]:
    """Workflows of every kind of answer: readable, changed since intake, broken, an image without one, gone."""
    jobs: list[tuple[str, int | None]] = []
    for i in range(9):
        path = folder / f"w{i}.json"
        nodes = [{"id": 1, "type": "LoraLoader", "mode": 0, "widgets_values": [f"l{i}.safetensors", 1, 1]}]
        path.write_text(json.dumps({"nodes": nodes, "links": []}), encoding="utf-8")
        jobs.append((str(path), path.stat().st_size if i != 4 else 1))
    (folder / "bad.json").write_text("{", encoding="utf-8")
    (folder / "plain.png").write_bytes(png(text("Comment", "hello")))
    jobs += [(str(folder / "bad.json"), 1), (str(folder / "plain.png"), None), (str(folder / "gone.json"), None)]
    return jobs


def test_workers_answer_each_job_in_order_as_this_process_would(tmp_path: Path) -> None:
    jobs = _files(tmp_path)
    with parse_worker.Workers(2, DEFAULTS["loaders"], PLACEHOLDERS, 32_000_000) as workers:
        answers = list(workers.map(jobs))
    expected = [parse_worker.answer(path, size, LOADERS, PLACEHOLDERS, 32_000_000) for path, size in jobs]
    assert answers == expected
    kinds = [kind for kind, _ in answers]
    assert kinds == [b"R"] * 4 + [b"r"] + [b"R"] * 4 + [b"E", b"N", b"E"]
    assert json.loads(answers[3][1])["models"][0]["name"] == "l3.safetensors"


def test_the_jobs_of_a_worker_that_died_come_back_lost(tmp_path: Path) -> None:
    jobs = _files(tmp_path)
    with parse_worker.Workers(2, DEFAULTS["loaders"], PLACEHOLDERS, None) as workers:
        workers._workers[1].process.kill()
        workers._workers[1].process.wait()
        answers = list(workers.map(jobs))
    owners = [(index // parse_worker.CHUNK) % 2 for index in range(len(jobs))]
    assert [kind == parse_worker.LOST for kind, _ in answers] == [owner == 1 for owner in owners]
    assert all(kind != parse_worker.LOST for kind, _ in answers[: parse_worker.CHUNK])


def test_a_worker_stopped_before_any_job_ends_quietly() -> None:
    # The scan closes a worker's input without a word when it hands out no job: not a traceback in cron's mail.
    done = subprocess.run(
        [sys.executable, "-m", "comfywatchman.workflow.parse_worker", str(os.getpid())],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
