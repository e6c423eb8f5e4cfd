"""prewarm: the later stages' runners, and with work their modules, imported ahead of the stage; lazy ones run,
failures left to the stage."""

from __future__ import annotations

import subprocess
import sys

import pytest

from comfywatchman import prewarm

PROBE = """
import sys
from comfywatchman import lazy, prewarm
lazy.module("comfywatchman.stages.verify_delta")  # made lazy first, as stages.verify does
before = type(sys.modules["comfywatchman.stages.verify_delta"]).__name__
done = prewarm.import_for(["verify", "unknown"])
after = type(sys.modules["comfywatchman.stages.verify_delta"]).__name__
print(before, after, done, "comfywatchman.stages.search" in sys.modules)
print(prewarm.import_for(["verify"]))
prewarm.import_for(["search"])
print("comfywatchman.stages.search_delta" in sys.modules, "comfywatchman.search.civitai" in sys.modules)
"""
RUNNERS_ONLY = """
import sys
from comfywatchman import prewarm
done = prewarm.import_for(["scan", "report"], work=False)
print(done, type(sys.modules["comfywatchman.workflow.extract"]).__name__)
"""


def test_the_modules_of_the_named_stages_are_imported_and_lazy_ones_run() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    first, second, third = done.stdout.splitlines()
    assert first == (
        "_LazyModule module ['comfywatchman.stages.verify_inputs', 'comfywatchman.stages.verify', "
        "'comfywatchman.stages.verify_delta'] False"
    )
    assert second == "[]"  # imported already: nothing to do
    assert third == "True True"  # the search's modules and its backends

    # Without work, only the runners, the checks every cycle runs: the scan's parser stays unloaded.
    done = subprocess.run([sys.executable, "-c", RUNNERS_ONLY], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['comfywatchman.stages.scan', 'comfywatchman.stages.report'] _LazyModule"


def test_a_module_that_fails_to_import_is_left_for_its_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(prewarm.MODULES, "report", ("comfywatchman.no_such_module", "comfywatchman.errors"))
    monkeypatch.setitem(prewarm.RUNNER_MODULES, "report", "comfywatchman.errors")
    assert prewarm.import_for(["report", "no such stage"]) == []  # comfywatchman.errors was imported already
    assert "comfywatchman.no_such_module" not in sys.modules
