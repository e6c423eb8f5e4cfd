"""The modules of the stages still to run, imported while this process would only wait.

A cycle runs the cache stage in a forked child beside intake (``side_by_side``). Intake takes a third of the
child's time, so this process then waits for the child, idle, ~0.08 s at 2,000 workflows; the search, the
verify and the report import their modules when they start, after that wait (the search with its backends and
its memo, the verify with its memo: ~40 ms of a one-changed cycle, dataclasses built and bytecode read). Imported
in the wait instead, they cost the cycle no time where a second core runs the child. A cycle where intake saw
nothing change needs few of them (each stage finds its inputs unchanged and returns): importing them then is
CPU time for nothing, so the caller names the stages that will work (``import_for``).

Import only: no module here runs stage code, reads a file of the home or logs for a stage. What fails to import
is left for the stage itself, which imports it again and fails as it always did.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable

logger = logging.getLogger(__name__)

# What each stage imports when it has work, beyond its runner (``stage_runner.STAGE_RUNNERS``): the modules its
# runner defers and the ones those load lazily (``lazy.module``), in the order the stage needs them.
MODULES: dict[str, tuple[str, ...]] = {
    "search": (
        "comfywatchman.stages.search_inputs",
        "comfywatchman.stages.search",
        "comfywatchman.stages.search_delta",
    ),
    "verify": (
        "comfywatchman.stages.verify_inputs",
        "comfywatchman.stages.verify",
        "comfywatchman.stages.verify_delta",
    ),
    "report": ("comfywatchman.stages.report",),
}
# The search's backends come from the registry (entry points), loaded once per process; "search" loads them.
_BACKENDS = "search"


def import_for(stages: Iterable[str]) -> list[str]:
    """Import the modules ``stages`` (names of ``MODULES``; others are ignored) need when they have work, and
    return the names of those imported now (those imported already are skipped; one that fails is logged at
    DEBUG and left for its stage)."""
    done = []
    for stage in stages:
        for name in MODULES.get(stage, ()):
            if _load(name):
                done.append(name)
        if stage == _BACKENDS:
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
