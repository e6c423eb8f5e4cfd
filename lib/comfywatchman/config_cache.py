"""The checked configuration of the last command, kept in ``state/config_cache.bin`` for the next one.

Loading the config reads two TOML files, checks each layer and the merged result against the config schema,
and imports every search backend (through the entry point group) to learn their config sections and
credentials: a tenth of a warm cycle's fixed cost, for the same answer as last time when nothing it is made of
changed. This module keeps that answer (``config.Checked``: the merged layers, their sources, where each
credential goes; never a secret) with what it was made of: the package version, the environment variables
and flags that are config layers, the user's config file, and the (size, mtime, ctime, inode, device) of the
default config, the config schema, the config code, the user's file, every folder of ``sys.path`` (a
distribution installed or removed there changes its folder), each backend module with the modules of its
base classes, and each ``entry_points.txt`` that names a backend. When all of them are as recorded, the
command takes the kept answer; anything else (a changed or missing file, another flag, a torn or foreign
cache file) is a normal load, which writes the cache again. The backends' entry points are kept too (name,
value, the entry_points.txt naming each): a command that takes the kept config hands them to the search
registry (``kept_backends``), which then loads the backends without importlib.metadata (its import, with the
email parser, and its scan of every distribution on sys.path: ~10 ms of a cycle). What is read at every run
is still read: the secrets file, the environment's secrets and the Hub's token file (``config.assemble``). On
a POSIX system the user's data and config folders (``config.UserDirs``: platformdirs, a few milliseconds to
import) are kept too, with what platformdirs finds them from: the XDG variables, the home, the effective user
(``user_dirs_key``).

The cache lives in the state folder of the home the command line (``--home``) or ``COMFYWATCHMAN_HOME``
names: those win over any file, so the home is known before the config is read. Without either there is no
cache and every command loads the config as before. A load with errors, with a plug-in that could not be
loaded (its error is logged by every load) or with a value JSON cannot hold as it is (a TOML date) is not
kept.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import __version__, config, file_identity, resources

logger = logging.getLogger(__name__)

FILE_NAME = "config_cache.bin"
# Bump when what the file holds, or what its key is made of, changes.
TAG = b"comfywatchman config cache 3"

Stat = list[int] | None

# A body made by a load this run, written once the state folder exists (``save_pending``).
_pending: dict[Path, bytes] = {}
# The backends' entry points a kept config was made with (``kept_backends``), set when one is taken.
_kept_backends: list[list[str]] | None = None


def load(
    config_file: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> config.Config:
    """Return the Config ``config.load(config_file, env, flags, cwd)`` returns, its checked layers taken from
    the cache when nothing they are made of changed (see the module); else loaded and kept for the next run.
    Raise ConfigError as ``config.load`` does."""
    env = os.environ if env is None else env
    flags = flags or {}
    cwd = cwd or Path.cwd()
    path = cache_path(flags, env, cwd)
    if path is None:
        return config.load(config_file, env=env, flags=flags, cwd=cwd)
    key = cache_key(config_file, env, flags)
    kept = read(path, key)
    if kept is not None:
        checked, dirs = kept
    else:
        watched = {name: stat_of(name) for name in _fixed_files(config_file, env)}
        checked = config.check(config_file, env, flags)
        dirs = config.UserDirs.for_user()
        _keep(path, key, watched, checked, dirs if key["user_dirs"] is not None else None)
    return config.assemble(checked, env, cwd, dirs)


def cache_path(flags: Mapping[str, Any], env: Mapping[str, str], cwd: Path) -> Path | None:
    """Return where the cache of a command with ``flags`` and ``env`` lives: the state folder of the home the
    flags or the environment name (they win over any config file); None when neither names one."""
    if flags.get("home") is not None:
        text = str(flags["home"])
    elif env.get("COMFYWATCHMAN_HOME"):
        text = env["COMFYWATCHMAN_HOME"]
    else:
        return None
    return config.expand_path(text, env, cwd) / "state" / FILE_NAME  # catalogue: config_cache


def cache_key(config_file: Path | None, env: Mapping[str, str], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Return what, besides the files it watches, the checked config of a command is made of: the version,
    the interpreter and its ``sys.path``, the user's config file as named, the config's environment
    variables and the flags."""
    found = config.user_file(config_file, env)
    return {
        "version": __version__,
        "python": [sys.hexversion, sys.executable, *sys.path],
        "file": None if found is None else str(found),
        "env": [env.get(name) for name in (config.CONFIG_ENV, *config.ENV_KEYS)],
        "flags": [
            None if flags.get("comfyui_root") is None else str(flags["comfyui_root"]),
            None if flags.get("home") is None else str(flags["home"]),
            bool(flags.get("offline")),
        ],
        "user_dirs": user_dirs_key(),
    }


# What platformdirs reads on a POSIX system to find the user's data and config folders (``config.UserDirs``):
# the XDG variables, the home, the variables of its Android check; and the effective user id (root's folders).
_USER_DIRS_ENV = ("HOME", "SHELL", "PREFIX", "ANDROID_DATA", "ANDROID_ROOT")


def user_dirs_key() -> list[Any] | None:
    """Return what the user's folders are found from on this POSIX system (the platform, the effective user,
    the environment variables platformdirs reads; platformdirs itself is a distribution on ``sys.path``,
    watched as every one is), or None where they are not kept: on Windows they come from the registry, and
    a home that is not set is looked up in the user database."""
    if os.name != "posix" or not os.environ.get("HOME"):
        return None
    names = sorted({*_USER_DIRS_ENV, *(name for name in os.environ if name.startswith("XDG_"))})
    return [sys.platform, os.geteuid(), [[name, os.environ.get(name)] for name in names]]


def stat_of(path: str) -> Stat:
    """Return ``[size, mtime_ns, ctime_ns, inode, device]`` of ``path`` (``file_identity``), or None when it
    cannot be stat'ed."""
    return file_identity.of(path)


def _fixed_files(config_file: Path | None, env: Mapping[str, str]) -> list[str]:
    """Return the files and folders every checked config is made of: the default config, the config schema,
    the code that merges and checks them, the user's config file and each folder of ``sys.path`` (where the
    distributions that register backends are found)."""
    found = config.user_file(config_file, env)
    files = [str(resources.DEFAULT_CONFIG), str(resources.schema_path("config")), config.__file__, __file__]
    files += [] if found is None else [str(found)]
    return files + [entry or "." for entry in sys.path]


def read(path: Path, key: Mapping[str, Any]) -> tuple[config.Checked, config.UserDirs | None] | None:
    """Return the checked config kept at ``path`` and the user's folders kept with it (None when they were not
    kept) when it was made with ``key`` and every file it watches is as it was; else None (no file, another
    key, a changed file, or a torn or foreign one). The backends' entry points kept with it are then this
    process's ``kept_backends``."""
    from comfywatchman.stages import cache_files  # not at import: a usage error imports nothing of the stages

    try:
        body = cache_files.read_checked(path, TAG)
        kept = orjson.loads(body) if body is not None else None
    except (OSError, ValueError) as exc:  # OtherFormat and a torn body are ValueErrors too
        logger.debug("config cache %s not used: %s", path, exc)
        return None
    if not isinstance(kept, dict) or kept.get("key") != key:
        return None
    try:
        if any(stat_of(name) != recorded for name, recorded in kept["stats"].items()):
            return None
        routes: list[config.Route] = [(tuple(names), token_file, url) for names, token_file, url in kept["routes"]]
        dirs = config.UserDirs(Path(kept["dirs"][0]), Path(kept["dirs"][1])) if kept["dirs"] is not None else None
        backends = [[str(name), str(value), str(file)] for name, value, file in kept["backends"]]
        checked = config.Checked(kept["merged"], tuple(kept["layers"]), routes)
    except (KeyError, TypeError, ValueError, AttributeError):  # checksummed, yet not what this module writes
        return None
    global _kept_backends
    _kept_backends = backends
    return checked, dirs


def kept_backends() -> list[list[str]] | None:
    """Return the search backends' entry points (``registry.entries``: name, value, the entry_points.txt
    naming it) that the config this process took from the cache was made with: every file they were read
    from and every folder of sys.path were as recorded then, so they are the ones importlib.metadata would
    find (``registry`` loads them without it). None when no config was taken from the cache."""
    return _kept_backends


def _keep(
    path: Path, key: dict[str, Any], watched: dict[str, Stat], checked: config.Checked, dirs: config.UserDirs | None
) -> None:
    """Write the cache of ``checked`` and the user's folders ``dirs`` (None: not kept) made with ``key`` from
    the files ``watched`` (stat'ed before they were read) to ``path``, or leave it for ``save_pending`` while
    the state folder does not exist yet. Nothing is kept for a load with a broken plug-in or with a value JSON
    does not give back as it was."""
    from comfywatchman.search import registry

    sources, backends = registry.sources(), registry.entries()
    if sources is None or backends is None:
        return
    try:
        merged = orjson.dumps(checked.merged)
    except TypeError:
        return
    if orjson.loads(merged) != checked.merged:  # a TOML date or time would come back as a string
        return
    stats = {**watched, **{name: stat_of(name) for name in sources}}
    document = {
        "key": key,
        "stats": stats,
        "merged": checked.merged,
        "layers": list(checked.layers),
        "routes": [list(route) for route in checked.routes],
        "dirs": None if dirs is None else [str(dirs.data), str(dirs.config)],
        "backends": backends,
    }
    _pending[path] = orjson.dumps(document)
    if path.parent.is_dir():
        save_pending()


def save_pending() -> None:
    """Write the cache a load of this process made and could not write yet, when its state folder exists now
    (the first cycle of a home makes it). A cache that cannot be written is left out: the next run loads
    the config as before."""
    from comfywatchman.stages import cache_files

    for path, body in list(_pending.items()):
        if not path.parent.is_dir():
            continue
        del _pending[path]
        try:
            cache_files.write_checked(path, TAG, body)
        except OSError as exc:
            logger.debug("config cache %s not written: %s", path, exc)
