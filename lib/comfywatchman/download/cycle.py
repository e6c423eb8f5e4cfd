"""Downloads inside a cycle (``--auto-download`` or ``[download] auto_download``): the step between search and
report. It runs what the policy trusts (and what a person approved); when a file landed, cache and scan run
again, so the report of the same cycle sees the workflow ready."""

from __future__ import annotations

import logging
from collections.abc import Callable

from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger(__name__)


def enabled(ctx: StageContext) -> bool:
    """Return whether this cycle downloads: the flag, else ``[download] auto_download`` (off by default)."""
    return bool(ctx.auto_download or ctx.config.section("download")["auto_download"])


def run(ctx: StageContext) -> StageOutcome:
    """Run the trusted and approved download tasks of the current queue; return the step's outcome.

    A final failure (404, a hash mismatch, ...) fails the step with its reason; a deferred task (429, a cut)
    does not: the next cycle resumes it. With the ``dry_run`` option only what would happen is logged.
    """
    # Imported here: a cycle that downloads nothing (the default) does not pay for the downloader's imports.
    from comfywatchman.download import runner
    from comfywatchman.download.cli import build_downloader, trusted_hosts
    from comfywatchman.download.state import DownloadState
    from comfywatchman.download.tasks import load

    outcome = StageOutcome("download")
    tasks, queue = load(ctx.state_dir)
    if queue is None or ctx.config.offline:
        outcome.detail = "offline: nothing downloaded" if ctx.config.offline else "no download queue"
        return outcome
    model_cache = runner.read_model_cache(ctx.state_dir)
    planned = runner.plan(tasks, model_cache, auto=True, trusted_hosts=trusted_hosts(ctx.config))
    dry_run = ctx.dry_run
    totals = runner.run(planned, build_downloader(ctx.config), DownloadState(ctx.state_dir), ctx.now, dry_run=dry_run)
    for line in totals.lines:
        logger.info("download: %s", line)
        if not dry_run and ": failed: " in line:
            outcome.fail(f"download {line}")
    outcome.counts = {"downloaded": totals.done, "present": totals.present, "failed": totals.failed,
                      "deferred": totals.deferred, "bytes": totals.bytes}  # fmt: skip
    if dry_run:
        outcome.detail = f"dry run: {len(totals.lines)} download(s) would run"
    else:
        outcome.detail = totals.summary()
    logger.info("%s", outcome.detail)
    return outcome


def in_cycle(ctx: StageContext, run_stage: Callable[..., StageOutcome]) -> list[StageOutcome]:
    """Return the outcomes of the download step and, when it put a file in place, of cache and scan run again
    (nothing when downloads are off). ``run_stage`` is the scheduler's stage runner."""
    if not enabled(ctx):
        return []
    outcomes = [run_stage("download", ctx)]
    if outcomes[0].counts.get("downloaded"):
        outcomes += [run_stage("cache", ctx), run_stage("scan", ctx)]
    return outcomes
