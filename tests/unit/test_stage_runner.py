"""A process imports what its work needs: each stage module when that stage runs, and the network, YAML and
error-wording libraries only where they are used (cron pays for every import on every cycle)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman import errors, stage_runner
from comfywatchman.stages.context import StageOutcome
from tests.helpers.comfy_tree import subprocess_env

# Libraries that a cycle with nothing to download, no server to ask and nothing invalid never needs.
NOT_AT_START = ("requests", "urllib3", "tenacity", "jsonschema", "referencing", "attrs", "yaml", "urllib.request")
OTHER_STAGES = ("scan", "search", "verify", "report", "cache", "intake")

# Runs the real command line in this process, then prints the modules it imported (one JSON line).
_PROGRAM = """
import json, sys
sys.argv = ["comfywatchman", *sys.argv[1:]]
from comfywatchman.__main__ import run  # what the command runs before it ends the process (exit_with)
code = run()
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_of(home: Path, *args: str) -> tuple[int, set[str]]:
    """Run ``comfywatchman ARGS`` in a subprocess; return its exit code and the modules it imported."""
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args],
        cwd=home,
        env=subprocess_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return int(result["code"]), set(result["modules"])


def test_the_gate_alone_imports_no_other_stage_and_no_network_library(tmp_path: Path) -> None:
    code, modules = _modules_of(tmp_path, "--stage", "gate", "--offline", "--force", "--home", str(tmp_path))
    assert code == 0
    assert "comfywatchman.stages.gate" in modules
    assert not {f"comfywatchman.stages.{name}" for name in OTHER_STAGES} & modules
    assert not set(NOT_AT_START) & modules
    assert not {m for m in modules if m.startswith("comfywatchman.download.") and m != "comfywatchman.download.cli"} - {
        "comfywatchman.download.cycle"
    }


def test_the_usage_error_imports_no_stage(tmp_path: Path) -> None:
    code, modules = _modules_of(tmp_path, "--home", str(tmp_path))
    assert code == 2
    assert not {m for m in modules if m.startswith("comfywatchman.stages.") and m != "comfywatchman.stages.context"}
    assert not set(NOT_AT_START) & modules


@pytest.mark.parametrize("name", ["gate", "cache", "intake", "scan", "search", "verify", "download", "report"])
def test_each_runner_runs_its_modules_run_looked_up_when_called(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The search's and the verify's runners are their checks that nothing changed, which import the stage
    # itself only when it has work.
    module_name = {
        "download": "comfywatchman.download.cycle",
        "search": "comfywatchman.stages.search_inputs",
        "verify": "comfywatchman.stages.verify_inputs",
    }.get(name, f"comfywatchman.stages.{name}")
    module = __import__(module_name, fromlist=["run"])
    seen: list[object] = []
    monkeypatch.setattr(module, "run", lambda ctx: seen.append(ctx) or StageOutcome(name))
    outcome = stage_runner.STAGE_RUNNERS[name]("a context")  # type: ignore[arg-type]
    assert outcome.stage == name and seen == ["a context"]
    assert stage_runner.STAGE_RUNNERS[name].__name__ == f"run_{module_name.rpartition('.')[2]}"


def test_a_cycle_where_nothing_changed_imports_no_search_no_verify_and_parses_no_config(tmp_path: Path) -> None:
    # The config comes from its cache (config_cache) and the search's check that nothing changed is all of the
    # search that runs (stages.search_inputs): no backend, no registry of them, no TOML parser, no schema
    # check of the config with error wording.
    args = ("--run-cycle", "--offline", "--force", "--home", str(tmp_path))
    for _ in range(2):  # the first cycle makes the state folder, where the second finds its config kept
        code, modules = _modules_of(tmp_path, *args)
        assert code in (0, 1)
    code, modules = _modules_of(tmp_path, *args)
    assert code in (0, 1)
    assert {"comfywatchman.stages.search_inputs", "comfywatchman.stages.verify_inputs"} <= modules
    searching = {"comfywatchman.stages.search", "comfywatchman.search.registry", "comfywatchman.search.base"}
    searching |= {"comfywatchman.stages.verify", "comfywatchman.comfy.variants"}
    backends = {f"comfywatchman.search.{name}" for name in ("civitai", "huggingface", "qwen", "declared", "model_list")}
    assert not (searching | backends | {"tomllib", "tomli", "importlib.metadata", "difflib"}) & modules
    assert not (set(NOT_AT_START) - {"yaml"}) & modules  # the demo's extra_model_paths.yaml is read every cycle
    assert "tempfile" not in modules  # temp files made with os.open (artifacts.temp_beside)


def test_a_stage_stopped_by_the_machine_says_which_file_and_why_not_that_it_crashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(ctx: object) -> StageOutcome:
        raise OSError(28, "No space left on device", str(tmp_path / "state" / "intake.json"))

    monkeypatch.setitem(stage_runner.STAGE_RUNNERS, "intake", full_disk)
    clock = iter(range(10))
    ctx = type("Ctx", (), {"now": lambda self: next(clock)})()
    _, outcome, _ = stage_runner.execute_stage("intake", ctx)  # type: ignore[arg-type]
    assert outcome.errors == [f"stage intake stopped: {tmp_path / 'state' / 'intake.json'}: No space left on device"]


def test_errors_in_words_give_an_oserrors_file_and_words_without_its_errno() -> None:
    assert errors.in_words(OSError(28, "No space left on device", "/h/state/x.json")) == (
        "/h/state/x.json: No space left on device"
    )
    assert errors.in_words(OSError(28, "No space left on device")) == "No space left on device"
    assert errors.in_words(ValueError("plain")) == "plain"
