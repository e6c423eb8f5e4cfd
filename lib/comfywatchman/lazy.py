"""Modules imported when first used, for a module whose common path needs few of its imports.

The scan stage's code for parsing and comparing workflows (extraction, the worker processes, the indexes) is
a sixth of a warm cycle's imports, yet a cycle where nothing changed returns before any of it runs.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def module(name: str) -> ModuleType:
    """Return the module ``name``: the one imported already, else one whose code runs when an attribute of it
    is first read (``importlib.util.LazyLoader``); either way it is in ``sys.modules`` and its package.

    Raise ModuleNotFoundError, as an import would, when there is no such module. Before Python 3.12 the load
    takes no lock: the first attribute read must not race another thread's (every use here reads first in the
    stage's own thread, before it starts any other).
    """
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    made = importlib.util.module_from_spec(spec)
    sys.modules[name] = made
    loader.exec_module(made)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, made)  # as an import does: ``package.child`` finds it
    return made
