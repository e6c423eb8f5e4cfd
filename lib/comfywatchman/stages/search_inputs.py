"""What the search stage's outputs are made of, and the check that they still stand.

This is all of the search a cycle runs when nothing it reads changed: a hash of its inputs' stats and its
settings against the one recorded with its outputs (``stage_inputs``). It imports none of the search itself
(the backends, the search cache, the HTTP client: a twentieth of a warm cycle to import), which
``stages.search`` brings in only when the search has to run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from comfywatchman import catalogue, stage_inputs
from comfywatchman.comfy.manager_files import MODEL_LIST, find_manager_file
from comfywatchman.stages import collector
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger("comfywatchman.stages.search")  # the search stage's lines, as they always were

# Bump when what search.json holds for the same inputs changes, so the next cycle searches again.
INPUTS_FORMAT = 1


def backend_order(ctx: StageContext) -> list[str]:
    """Return the backends this search asks, in order: ``--backends``, else ``search.backend_order``."""
    return list(ctx.backends or ctx.config.section("search")["backend_order"])


def outputs(ctx: StageContext) -> list[Path]:
    """Return the files the search writes: ``search.json`` and the download queue."""
    return [catalogue.path(ctx.config, key) for key in ("search", "download_queue")]


def inputs_fingerprint(ctx: StageContext, order: list[str]) -> str:
    """Return a hash of what search.json is computed from: scan.json, model_cache.json, the search cache and
    the Manager's model list (each rewritten only when its content changes, so its stat stands for it), and
    the settings."""
    files = [catalogue.path(ctx.config, key) for key in ("scan", "model_cache", "search_cache")]
    model_list = find_manager_file(ctx.config.comfyui_root, MODEL_LIST)
    files += [model_list] if model_list is not None else []
    settings = {
        "format": INPUTS_FORMAT,
        "search": ctx.config.section("search"),
        "count_inactive": ctx.config.section("scan")["count_inactive_nodes"],
        "offline": ctx.config.offline,
        "order": order,
    }
    return stage_inputs.fingerprint(files, settings)


def unchanged(ctx: StageContext, order: list[str]) -> StageOutcome | None:
    """Return the outcome of the last search when nothing it reads changed since and no cached answer expired
    (its outputs are left as they are: scan.json is not even read); else None."""
    wanted = inputs_fingerprint(ctx, order)
    recorded = stage_inputs.reusable(ctx.state_dir, "search", wanted, outputs(ctx), ctx.now())
    if recorded is None:
        return None
    outcome = StageOutcome("search")
    outcome.counts = dict(recorded["counts"])
    outcome.detail = recorded["detail"]
    logger.info("search: nothing changed since cycle %s: %s", recorded["cycle_id"], outcome.detail)
    return outcome


def run(ctx: StageContext) -> StageOutcome:
    """Run the search stage: the last outcome when nothing changed (``unchanged``), else the search itself
    (``stages.search``), with the cycle collector paused (``collector.paused``)."""
    with collector.paused():
        kept = unchanged(ctx, backend_order(ctx))
        if kept is not None:
            return kept
        from comfywatchman.stages import search

        return search.searched(ctx, backend_order(ctx))
