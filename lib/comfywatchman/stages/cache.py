"""Cache: refresh ``state/model_cache.json`` and ``state/custom_nodes_cache.json`` from the install."""

from __future__ import annotations

import logging
import os

from comfywatchman import cache_manager, preflight
from comfywatchman.config import expand_path
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger(__name__)


def run(ctx: StageContext) -> StageOutcome:
    """Rebuild both caches for the configured install; return the outcome with file counts.

    A ComfyUI root that is not an install (see :mod:`comfywatchman.preflight`) fails the stage with a one-line
    message and leaves the previous caches as they were.
    """
    outcome = StageOutcome("cache")
    config = ctx.config
    root = config.comfyui_root
    problem = preflight.comfyui_root_problem(root)
    if problem:
        outcome.fail(problem)
        return outcome
    extra = [expand_path(p, os.environ, config.home, root) for p in config.section("comfyui")["extra_model_paths"]]
    comfyui = config.section("comfyui")
    bounds = (comfyui["model_walk_max_depth"], comfyui["model_walk_max_entries"])
    result = cache_manager.refresh(root, ctx.state_dir, ctx.now(), extra, demo=config.using_demo, bounds=bounds)
    for problem in result.model_cache["problems"]:
        outcome.fail(problem)
    for finding in result.findings:  # one file's name: a finding, not a failed stage
        outcome.finding(finding)
    outcome.counts = {
        "model_files": result.model_cache["file_count"],
        "packs": len(result.nodes_cache["packs"]),
        "model_cache_written": int(result.models_written),
        "nodes_cache_written": int(result.nodes_written),
    }
    outcome.detail = (
        f"{result.model_cache['file_count']} model files, {len(result.nodes_cache['packs'])} packs; "
        f"model cache {'rewritten' if result.models_written else 'unchanged'}, "
        f"custom nodes cache {'rewritten' if result.nodes_written else 'unchanged'}"
    )
    logger.info("cache: %s", outcome.detail)
    return outcome
