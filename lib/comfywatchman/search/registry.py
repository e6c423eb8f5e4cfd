"""Which search backends exist, by name.

Every backend, built-in or third-party, is a class named in the ``comfywatchman.backends`` entry point group
(``[project.entry-points."comfywatchman.backends"]`` in a distribution's ``pyproject.toml``), so the built-ins
are found exactly as a plug-in is and adding one touches no list here. This module imports no backend
module at import time and nothing that imports the config: the config loader asks it for the backends'
config sections and credentials without an import cycle. Where the config cache (``config_cache``) gave this
command a kept config, the entry points kept with it are loaded as they are, without importlib.metadata: the
cache holds only while no file they were read from and no folder of sys.path changed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from functools import cache, reduce
from importlib import import_module
from pathlib import Path
from typing import Any

from comfywatchman.search.base import SearchBackend

logger = logging.getLogger(__name__)

GROUP = "comfywatchman.backends"

# What the one load of the entry points met: a plug-in that failed, the entry_points.txt files of the
# distributions that name backends, and the modules their loading imported (the config cache keys on the
# files; see ``sources``).
_problems: list[str] = []
_entry_files: list[str | None] = []
_loaded_modules: set[str] = set()
# The entry points the load went through, in its order: name, value, entry_points.txt (see ``entries``).
_entries: list[tuple[str, str, str | None]] = []

# An entry point's value, ``module:attr.attr``, as importlib.metadata's EntryPoint.pattern reads it.
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


def _found_entries() -> Iterator[tuple[str, str, str | None]]:
    """Yield the name, value and ``entry_points.txt`` (None: a distribution that is no plain folder) of each
    entry point of ``GROUP``: those the config cache kept (``_kept``), else those importlib.metadata finds,
    in its order."""
    kept = _kept()
    if kept is not None:
        yield from ((name, value, file) for name, value, file in kept)
        return
    # Imported here: importlib.metadata (with the email parser) and its scan of every distribution on sys.path
    # cost ~10 ms, and a command whose config was kept (``_kept``) knows the entry points without them.
    from importlib.metadata import entry_points

    for entry in entry_points(group=GROUP):
        folder = getattr(entry.dist, "_path", None)  # a PathDistribution's .dist-info folder
        yield entry.name, entry.value, str(Path(folder) / "entry_points.txt") if folder is not None else None


def _kept() -> list[list[str]] | None:
    """Return the entry points the config cache kept with the config of this command when nothing they were
    read from changed (``config_cache.kept_backends``), else None."""
    config_cache = sys.modules.get("comfywatchman.config_cache")  # only one that loaded the config kept any
    return None if config_cache is None else config_cache.kept_backends()


def _load_value(value: str) -> Any:
    """Return the object the entry point value ``value`` names (as ``EntryPoint.load`` does); raise what
    its import raises, or ValueError for a value that names nothing."""
    match = _VALUE.match(value)
    if match is None:
        raise ValueError(f"{value!r} is not an entry point value (module:attr)")
    module = import_module(match.group("module"))
    return reduce(getattr, filter(None, (match.group("attr") or "").split(".")), module)


@cache
def _load() -> dict[str, type[SearchBackend]]:
    found: dict[str, type[SearchBackend]] = {}
    for name, value, file in _found_entries():
        _entry_files.append(file)
        _entries.append((name, value, file))
        before = set(sys.modules)
        try:
            cls = _load_value(value)
        except Exception as exc:  # a broken plug-in must not take the built-in backends down with it
            logger.error("search backend plug-in %s could not be loaded: %s", name, exc)
            _problems.append(name)
            continue
        finally:
            _loaded_modules.update(set(sys.modules) - before)
        if not (isinstance(cls, type) and issubclass(cls, SearchBackend)):
            logger.error("search backend plug-in %s is not a SearchBackend subclass; ignored", name)
            _problems.append(name)
            continue
        found[cls.name] = cls
    if "declared" not in found:
        _problems.append("declared")
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


def sources() -> list[str] | None:
    """Return the files the loaded backends were made from: each backend module, the modules of its base
    classes and every module their loading imported (a plug-in's own helpers), and the ``entry_points.txt`` of
    each distribution that names one (a cache of what the backends declare holds while none of these and no
    folder of ``sys.path`` changed); None when a plug-in could not be loaded or a distribution is not a plain
    folder (such a load is not to be kept: its error is logged anew by every load)."""
    _load()
    if _problems or None in _entry_files:
        return None
    files = {path for path in _entry_files if path is not None}
    modules = set(_loaded_modules)
    for cls in _load().values():
        if any(base.__module__ != "builtins" and base.__module__ not in sys.modules for base in cls.__mro__):
            return None
        modules.update(base.__module__ for base in cls.__mro__ if base.__module__ != "builtins")
    for name in modules:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path is not None:
            files.add(path)
    return sorted(files)


def entries() -> list[list[str]] | None:
    """Return the entry points the backends were loaded from, in order, each ``[name, value, the
    entry_points.txt that names it]``: what the config cache keeps with ``sources`` so that the next command
    whose sources are as they were loads them without importlib.metadata; None when ``sources`` is None."""
    if sources() is None:
        return None
    return [[name, value, file] for name, value, file in _entries if file is not None]


def backend_class(name: str) -> type[SearchBackend]:
    """Return the backend class registered as ``name``; raise KeyError if there is none."""
    return _load()[name]
