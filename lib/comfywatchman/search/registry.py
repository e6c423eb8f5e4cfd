"""Which search backends exist, by name.

Built-in backends live in modules of this package and register themselves with ``@register``. Third-party
backends are found through the ``comfywatchman.backends`` entry point group, so a plug-in needs no change here.
"""

from __future__ import annotations

import importlib
import logging
from functools import cache
from importlib.metadata import entry_points

from comfywatchman.search.base import SearchBackend

logger = logging.getLogger(__name__)

_BACKENDS: dict[str, type[SearchBackend]] = {}
BUILTIN_MODULES = (
    "comfywatchman.search.civitai",
    "comfywatchman.search.huggingface",
    "comfywatchman.search.qwen",
)


def register(cls: type[SearchBackend]) -> type[SearchBackend]:
    """Class decorator: make ``cls`` available under ``cls.name``; return it unchanged."""
    _BACKENDS[cls.name] = cls
    return cls


@cache
def _load() -> dict[str, type[SearchBackend]]:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in entry_points(group="comfywatchman.backends"):
        try:
            register(entry.load())
        except Exception as exc:  # a broken plug-in must not take the built-in backends down with it
            logger.error("search backend plug-in %s could not be loaded: %s", entry.name, exc)
    return dict(_BACKENDS)


def known_backends() -> set[str]:
    """Return the names of every available backend."""
    return set(_load())


def backend_class(name: str) -> type[SearchBackend]:
    """Return the backend class registered as ``name``; raise KeyError if there is none."""
    return _load()[name]
