"""Which search backends exist, by name.

Every backend, built-in or third-party, is a class named in the ``comfywatchman.backends`` entry point group
(``[project.entry-points."comfywatchman.backends"]`` in a distribution's ``pyproject.toml``), so the built-ins
are found exactly as a plug-in is and adding one touches no list here. This module imports no backend
module at import time and nothing that imports the config: the config loader asks it for the backends'
config sections and credentials without an import cycle.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

from comfywatchman.search.base import SearchBackend

logger = logging.getLogger(__name__)

GROUP = "comfywatchman.backends"


@cache
def _load() -> dict[str, type[SearchBackend]]:
    found: dict[str, type[SearchBackend]] = {}
    for entry in entry_points(group=GROUP):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plug-in must not take the built-in backends down with it
            logger.error("search backend plug-in %s could not be loaded: %s", entry.name, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, SearchBackend)):
            logger.error("search backend plug-in %s is not a SearchBackend subclass; ignored", entry.name)
            continue
        found[cls.name] = cls
    if "declared" not in found:
        # The built-ins come from this package's own entry points: a source checkout whose installed metadata
        # predates them (an old `pip install -e .`) finds none; say how to fix it rather than "unknown backend".
        logger.error(
            "the built-in search backends are not registered: reinstall comfywatchman (make install, or "
            "pip install -e . in a checkout) so its entry points in group %s are installed",
            GROUP,
        )
    return found


def all_backends() -> dict[str, type[SearchBackend]]:
    """Return every loadable backend class by name, offline sources included."""
    return dict(_load())


def known_backends() -> set[str]:
    """Return the names ``search.backend_order`` and ``--backends`` may use (offline sources excluded)."""
    return {name for name, cls in _load().items() if not cls.answers_first}


def first_sources() -> list[type[SearchBackend]]:
    """Return the offline sources asked before the backend order, the workflow's own declaration first."""
    sources = [cls for cls in _load().values() if cls.answers_first]
    return sorted(sources, key=lambda cls: (cls.name != "declared", cls.name))


def backend_class(name: str) -> type[SearchBackend]:
    """Return the backend class registered as ``name``; raise KeyError if there is none."""
    return _load()[name]
