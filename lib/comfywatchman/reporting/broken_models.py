"""The header check of every installed safetensors file (``safetensors.broken_files`` of model_cache.json), run
in a process of its own beside the report, and the model folders whose walk was cut short.

The check opens each installed model file (tens of thousands on a large install), a tenth of a second per
15,000 files, while the report itself runs on one core. Started before the report builds its workflows, the
check runs on another core meanwhile. Its answer is the one the report would make itself: the same function
on the same model_cache.json, which the report reads and validates once (``Check.findings``) and without which
the child's answer is not used. When the process cannot be started or its answer cannot be read, the report
runs the check itself: the helper changes when the work is done, never what it finds.

A cycle starts the check earlier still (``start_early``), before its search, when the report will need it: the
search and the verify keep one core busy, the check takes the other, and the report finds its answer ready. The
report takes that process only for the very model_cache.json it was started for (``Check``); one it does not take
is ended with the cycle (``end_early``).
"""

from __future__ import annotations

import logging
import os
import site
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

import comfywatchman
from comfywatchman import artifacts, file_identity
from comfywatchman.download.safetensors import broken_files
from comfywatchman.errors import ArtifactError

if TYPE_CHECKING:
    import subprocess

logger = logging.getLogger(__name__)

MODEL_CACHE = "model_cache.json"
_FIELDS = ("folder", "name", "path", "reason")
# A model cache this large lists thousands of files (some 80 bytes each): enough header reads to pay for a
# process of its own (its start costs some 0.04 s of the other core); a smaller install is checked in place.
WORTH_A_PROCESS = 256 * 1024


def worth_a_process(state: Path) -> bool:
    """Return True when the install has enough model files (by the size of model_cache.json) that checking
    them in a process of its own saves the report time."""
    try:
        return (state / MODEL_CACHE).stat().st_size >= WORTH_A_PROCESS
    except OSError:
        return False


# The check started before the report (``start_early``), by the path of its model_cache.json: the file's identity
# then, and the process.
_EARLY: dict[Path, tuple[list[int], subprocess.Popen[bytes]]] = {}


def start_early(state: Path) -> bool:
    """Start the header check of ``state``'s model_cache.json now, in a process of its own, for this process's
    report to take (``Check``); return whether it started (not when the file is missing or no process starts)."""
    path = state / MODEL_CACHE
    _end(_EARLY.pop(path, (None, None))[1])
    identity = file_identity.of(path)
    child = _spawn(path) if identity is not None else None
    if identity is None or child is None:
        return False
    _EARLY[path] = (identity, child)
    return True


def end_early() -> None:
    """End the checks started early that no report took (the cycle is over)."""
    while _EARLY:
        _end(_EARLY.popitem()[1][1])


def _take_early(path: Path) -> subprocess.Popen[bytes] | None:
    """Return the check started early for ``path`` when the file is still the one it was started for; else end
    it (if any) and return None."""
    early = _EARLY.pop(path, None)
    if early is None:
        return None
    identity, child = early
    if file_identity.of(path) == identity:
        return child
    _end(child)
    return None


def _end(child: subprocess.Popen[bytes] | None) -> None:
    """Kill ``child`` when it still runs, and collect it."""
    if child is not None:
        if child.poll() is None:
            child.kill()
        child.communicate()


class Check:
    """The installed files' findings of ``state/model_cache.json``, the header check computed in a child
    process started now (``start``; the one ``start_early`` started, when it was for this very file) and read by
    ``findings``; a context manager that ends the child when the report leaves early."""

    def __init__(self, state: Path, start: bool = True) -> None:
        self.path = state / MODEL_CACHE
        early = _take_early(self.path)
        if not start:
            _end(early)
            early = None
        self._child: subprocess.Popen[bytes] | None = early or (_spawn(self.path) if start else None)

    def __enter__(self) -> Check:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the child process, when it is still running (the report left before it needed the answer)."""
        child, self._child = self._child, None
        _end(child)

    def findings(self) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
        """Return the installed safetensors files that are cut short or unreadable (``broken_files``) and the
        model folders whose walk the cache stage cut short (``walk_limits``); both empty when model_cache.json
        is missing, and when it is broken (logged: the cache stage has said why)."""
        answer = self._answer()
        try:
            cache = artifacts.read_optional(self.path, "model_cache")
        except ArtifactError as exc:
            logger.warning("%s", exc)
            return [], []
        if cache is None:
            return [], []
        broken = answer if answer is not None else broken_files(cache)
        return broken, list(cache.get("walk_limits", []))

    def _answer(self) -> list[dict[str, str]] | None:
        """Return the child's list once it has ended, or None when there is no child or no answer from it."""
        child, self._child = self._child, None
        if child is None:
            return None
        try:
            out, _ = child.communicate()
        except OSError as exc:  # pragma: no cover - a pipe that breaks under us
            logger.debug("header check process: %s; checked in the report", exc)
            return None
        found = _parsed(out) if child.returncode == 0 else None
        if found is None:
            logger.debug("header check process exited %s without an answer; checked in the report", child.returncode)
        return found


def _spawn(model_cache: Path) -> subprocess.Popen[bytes] | None:
    """Return the child process that prints ``broken_files`` of ``model_cache`` as JSON, or None when it
    cannot start."""
    if not sys.executable:
        return None
    # Imported here: a report that keeps its findings (most cycles) starts no process.
    import subprocess

    env = dict(os.environ)
    # The child imports this package from where the report imported it: an installed package from the site
    # (never put first on the path, where it could hide the standard library), else from its folder.
    package_root = str(Path(comfywatchman.__file__).resolve().parent.parent)
    if package_root not in _site_folders():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "comfywatchman.download.safetensors", str(model_cache)]
    try:
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
    except OSError as exc:
        logger.debug("header check process not started (%s); checked in the report", exc)
        return None


def _site_folders() -> set[str]:
    """Return the site-packages folders of this Python (none when it does not say)."""
    try:
        folders = [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # pragma: no cover - an embedded Python without them
        return set()
    return {str(Path(f).resolve()) for f in folders}


def _parsed(out: bytes) -> list[dict[str, str]] | None:
    """Return the child's list, or None when it is not a list of ``{folder, name, path, reason}`` strings."""
    try:
        found: Any = orjson.loads(out)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(found, list):
        return None
    for item in found:
        if (
            not isinstance(item, dict)
            or set(item) != set(_FIELDS)
            or not all(isinstance(v, str) for v in item.values())
        ):
            return None
    return found
