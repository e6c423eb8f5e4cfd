"""The model walk begun as a cycle's process starts: which command and home it is for, the plan it keeps, and
a child that finds exactly what the cache stage would, whose answer is taken once and only for the same plan."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

from comfywatchman import walk_ahead
from comfywatchman.comfy import folders
from comfywatchman.stages import cache_files
from tests.helpers.model_files import loras_tree


def _plan(*directories: Path, bounds: tuple[int, int] = (12, 50_000)) -> walk_ahead.Plan:
    return [["loras", str(d), sorted(folders.suffixes_of("loras")), *bounds] for d in directories]


def test_the_home_is_the_last_one_the_command_line_names_else_the_environments() -> None:
    env = {"COMFYWATCHMAN_HOME": "/env/home"}
    assert walk_ahead.named_home(["--run-cycle"], env) == "/env/home"
    assert walk_ahead.named_home(["--home", "/a", "--run-cycle", "--home=/b"], env) == "/b"
    assert walk_ahead.named_home(["--home", "$WHERE/cw"], env) is None  # left to the config's expansion
    assert walk_ahead.named_home(["--home", "~/cw"], {}) == os.path.expanduser("~/cw")
    assert walk_ahead.named_home(["--home", "rel"], {}) == os.path.abspath("rel")
    assert walk_ahead.named_home(["--run-cycle", "--home"], {}) is None  # argparse refuses it; nothing to walk
    assert walk_ahead.named_home(["--run-cycle"], {}) is None


def test_a_plan_is_kept_once_and_a_torn_or_foreign_file_is_no_plan(tmp_path: Path) -> None:
    path = tmp_path / walk_ahead.FILE_NAME
    plan = _plan(tmp_path / "loras", tmp_path / "more")
    assert walk_ahead.read_plan(str(path)) is None
    assert walk_ahead.keep_plan(path, plan)
    assert walk_ahead.read_plan(str(path)) == plan
    before = path.stat().st_mtime_ns
    assert not walk_ahead.keep_plan(path, plan)  # the same plan: the file is left alone
    assert path.stat().st_mtime_ns == before
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])
    assert walk_ahead.read_plan(str(path)) is None
    cache_files.write_checked(path, walk_ahead.TAG, b"\xff not marshal")
    assert walk_ahead.read_plan(str(path)) is None
    cache_files.write_checked(path, b"another file", whole.partition(b"\n")[2].partition(b"\n")[2])
    assert walk_ahead.read_plan(str(path)) is None
    cache_files.write_checked(path, walk_ahead.TAG, marshal.dumps([["loras", 7, [], 1, 2]]))  # not a plan
    assert walk_ahead.read_plan(str(path)) is None


def test_no_walk_for_another_command_for_no_home_or_no_plan_or_where_forks_are_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert not walk_ahead.start(["--stage", "cache", "--home", str(home)], {})
    assert not walk_ahead.start(["--run-cycle"], {})  # no home named
    assert not walk_ahead.start(["--run-cycle", "--home", str(home)], {})  # a first cycle: no plan kept
    walk_ahead.keep_plan(home / "state" / walk_ahead.FILE_NAME, _plan(tmp_path))
    assert not walk_ahead.start(["--run-cycle", "--home", str(home)], {"COMFYWATCHMAN_FORK_STAGES": "0"})
    assert walk_ahead.take(_plan(tmp_path)) is None


# Run in a fresh process: a fork needs a process with one thread, which a test run does not promise.
_CHILD = """
import json, os, sys
from comfywatchman import walk_ahead
from comfywatchman.comfy.model_walk import walk
home, plan, other = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
walk_ahead.keep_plan(os.path.join(home, "state", walk_ahead.FILE_NAME), plan)
started = walk_ahead.start(["--run-cycle", "--home", home], {})
pid = walk_ahead._walker.pid if started else None
answers = {"started": started, "other": walk_ahead.take(other)}
answers["taken"] = walk_ahead.take(plan)
answers["again"] = walk_ahead.take(plan)
answers["here"] = [walk(*job) for job in plan]
walk_ahead.end()
try:
    os.waitpid(pid, os.WNOHANG)
    answers["reaped"] = False
except ChildProcessError:
    answers["reaped"] = True
print(json.dumps(answers))
"""


def _in_fresh_process(home: Path, plan: walk_ahead.Plan, other: walk_ahead.Plan) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(home), json.dumps(plan), json.dumps(other)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "COMFYWATCHMAN_FORK_STAGES"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answers: dict[str, object] = json.loads(done.stdout)
    return answers


def test_the_child_finds_what_the_cache_stage_would_and_its_answer_is_taken_once(tmp_path: Path) -> None:
    loras = loras_tree(tmp_path / "models")
    (loras / "name with spaces.safetensors").write_bytes(b"x" * 4)
    plan = _plan(loras, tmp_path / "missing", bounds=(1, 50_000))  # depth 1: SDXL/deep is not walked
    answers = _in_fresh_process(tmp_path / "home", plan, _plan(loras))  # the other plan: other bounds
    if not answers["started"]:
        assert os.cpu_count() == 1 or not sys.platform.startswith("linux")
        return
    assert answers["other"] is None
    assert answers["taken"] == answers["here"]
    found, reason, _entries, skipped = answers["here"][0]  # type: ignore[index]
    assert [name for name, _size in found] == ["SDXL/b.SAFETENSORS", "a.safetensors", "name with spaces.safetensors"]
    assert reason == "folders deeper than 1 levels not walked (model_walk_max_depth)" and skipped == []
    assert answers["again"] is None
    assert answers["reaped"] is True
