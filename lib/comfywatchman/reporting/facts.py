"""What the report's commands need to know about the install, gathered from this cycle's state: where
downloads go (the download queue), how disabled packs are disabled (the custom nodes cache), ComfyUI's own
Python, and when the next cycle is due."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, resources
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting.answers import key
from comfywatchman.reporting.commands import InstallFacts
from comfywatchman.stages.context import StageContext
from comfywatchman.stages.scan_digests import file_key

logger = logging.getLogger(__name__)

# ComfyUI's own Python: a venv in its root (manual installs, ComfyUI Desktop), or the portable build's.
PYTHONS = ("venv/bin/python", ".venv/bin/python", "venv/Scripts/python.exe", "../python_embeded/python.exe")


def gather(ctx: StageContext, scan: Mapping[str, Any], has_disabled: bool, has_downloads: bool) -> InstallFacts:
    """Return the InstallFacts for this cycle's report (``scan``: scan.json's head; the disabled packs and the
    download targets are read only when a missing node type is disabled or a download is proven); a state
    file that cannot be read only costs the commands that needed it (logged), never the report."""
    root = Path(scan["comfyui_root"])
    return InstallFacts(
        root=str(root),
        python=comfyui_python(root),
        disabled=disabled_packs(ctx.state_dir) if has_disabled else {},
        targets=download_targets(ctx.state_dir) if has_downloads else {},
        next_cycle_at=next_cycle_at(ctx.state_dir, ctx.now(), ctx.config.section("schedule")["interval_minutes"]),
        offline=ctx.config.offline,
        rerun=rerun_argv(ctx, scan),
    )


def comfyui_python(root: Path) -> str | None:
    """Return the Python ComfyUI runs with when it lives in or beside ``root``, else None."""
    for relative in PYTHONS:
        candidate = root / relative
        if candidate.is_file():
            return str(candidate.resolve())
    return None


def disabled_packs(state_dir: Path) -> dict[str, Mapping[str, Any]]:
    """Return disabled pack name -> its custom_nodes_cache.json entry (path, how it is disabled)."""
    try:
        cache = artifacts.read_optional(state_dir / "custom_nodes_cache.json", "custom_nodes_cache")
    except ArtifactError as exc:
        logger.warning("%s; re-enable commands name no folder", exc)
        return {}
    return {p["name"]: p for p in (cache or {}).get("packs", []) if not p["enabled"]}


def download_targets(state_dir: Path) -> dict[tuple[str | None, str], str | None]:
    """Return (folder type, lookup key of the name) -> target path, from the download queue: read once while
    the file is the one read last (the report asks twice, for what its findings are made of and for its
    commands; the queue holds a task per proven file)."""
    path = state_dir / "download_queue.json"
    seen = file_key(path)
    last = _TARGETS.get(str(path))
    if last is not None and seen is not None and last[0] == seen:
        return last[1]
    try:
        queue = artifacts.read_optional(path, "download_queue")
    except ArtifactError as exc:
        logger.warning("%s; download targets are guessed from the folder type", exc)
        return {}
    targets = {key(t["folder"], t["name"]): t["target_path"] for t in (queue or {}).get("tasks", [])}
    _TARGETS.clear()
    if seen is not None:
        _TARGETS[str(path)] = (seen, targets)
    return targets


# The download targets read last, and the file they were read from (its ``file_key``), by its path.
_TARGETS: dict[str, tuple[list[int], dict[tuple[str | None, str], str | None]]] = {}


def next_cycle_at(state_dir: Path, now: datetime, interval_minutes: float) -> str:
    """Return when the next cycle is due: scheduler.json's ``next_run_at`` when it is still ahead, else one
    interval from now (the report runs inside a cycle, before that cycle writes its own next_run_at)."""
    try:
        document = artifacts.read_optional(state_dir / "scheduler.json", "scheduler") or {}
    except ArtifactError as exc:
        logger.warning("%s; the next cycle is taken to be one interval away", exc)
        document = {}
    due = _parse(document.get("next_run_at"))
    if due is None or due <= now:
        due = now + timedelta(minutes=interval_minutes)
    return due.isoformat(timespec="seconds")


def _parse(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def rerun_argv(ctx: StageContext, scan: Mapping[str, Any]) -> list[str]:
    """Return the argv that runs one cycle now on the same install, home and config files."""
    argv = ["comfywatchman", "--run-cycle"]
    if not scan["demo"]:
        argv += ["--comfyui-root", scan["comfyui_root"]]
    argv += ["--home", str(ctx.config.home)]
    for source in ctx.config.layers:
        if source not in (str(resources.DEFAULT_CONFIG), "environment", "command line"):
            argv += ["--config", source]
    return argv
