"""The modules of the stages still to run, imported while this process would only wait.

A cycle runs the cache stage in a forked child beside intake (``side_by_side``). Intake takes a third of the
child's time, so this process then waits for the child, idle, ~0.08 s at 2,000 workflows; the later stages import
their modules when they start, after that wait. Imported in the wait instead, they cost the cycle no time where a
second core runs the child. Every cycle runs each later stage's runner (``stage_runner.RUNNER_MODULES``: the
check that its inputs are unchanged), so those are imported in any cycle (~8-10 ms of a cycle where nothing
changed). The modules a stage loads only when it has work (the scan's parser, the search with its backends and
its memo, the verify with its memo: ~20 ms of a one-changed cycle at 2,000 workflows, bytecode read and run) are
imported only when the caller says the stages will work (``import_for``, ``work``): in a cycle where nothing
changed they would be CPU time for nothing.

Import only: no module here runs stage code, reads a file of the home or logs for a stage. What fails to import
is left for the stage itself, which imports it again and fails as it always did.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable

from comfywatchman.stage_runner import RUNNER_MODULES

logger = logging.getLogger(__name__)

# What each stage imports when it has work, beyond its runner (``stage_runner.RUNNER_MODULES``): the modules its
# runner defers and the ones those load lazily (``lazy.module``), in the order the stage needs them.
MODULES: dict[str, tuple[str, ...]] = {
    "scan": (
        "comfywatchman.comfy.inventory",
        "comfywatchman.workflow.load",
        "comfywatchman.workflow.extract",
        "comfywatchman.workflow.embeddings",
        "comfywatchman.workflow.parse_worker",
    ),
    "search": ("comfywatchman.stages.search", "comfywatchman.stages.search_delta"),
    "verify": ("comfywatchman.stages.verify", "comfywatchman.stages.verify_delta"),
    "report": ("comfywatchman.reporting.parts", "comfywatchman.reporting.broken_models"),
}
# The search's backends come from the registry (entry points), loaded once per process; "search" loads them.
_BACKENDS = "search"


def import_for(stages: Iterable[str], work: bool = True) -> list[str]:
    """Import the runner of each of ``stages`` (names of ``stage_runner.RUNNER_MODULES``; others are ignored)
    and, with ``work``, the modules it needs when it has work (``MODULES``); return the names of those imported
    now (those imported already are skipped; one that fails is logged at DEBUG and left for its stage)."""
    done = []
    for stage in stages:
        runner = RUNNER_MODULES.get(stage)
        if runner is None:
            continue
        for name in (runner, *(MODULES.get(stage, ()) if work else ())):
            if _load(name):
                done.append(name)
        if work and stage == _BACKENDS:
            _load_backends()
    return done


def _load(name: str) -> bool:
    """Import the module ``name`` and run its code (a module ``lazy.module`` made runs on its first attribute
    read); return whether it ran now."""
    found = sys.modules.get(name)
    if found is not None and type(found).__name__ != "_LazyModule":
        return False
    try:
        module = importlib.import_module(name)
        getattr(module, "__name__")  # a lazy module's code runs on the first attribute read  # noqa: B009
    except Exception as exc:  # its stage imports it again and reports what is wrong
        logger.debug("prewarm: %s not imported: %s", name, exc)
        return False
    return True


def _load_backends() -> None:
    """Load the search backends (``registry``), as the search does first."""
    try:
        from comfywatchman.search import registry

        registry.all_backends()
    except Exception as exc:  # the search loads them again and reports what is wrong
        logger.debug("prewarm: the search backends not loaded: %s", exc)
