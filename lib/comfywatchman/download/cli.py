"""The download flags of the ``comfywatchman`` command: ``--queue``, ``--approve``, ``--approve-proven``,
``--download``, ``--auto-download`` and ``--dry-run``. ``cli.py`` adds them and hands over; results go to stdout."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from comfywatchman.config import Config
from comfywatchman.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ArtifactError
from comfywatchman.stages.context import utcnow

if TYPE_CHECKING:
    # Every command line builds its parser here, but only a download action needs the downloader (requests,
    # the search's HTTP client): the functions that use them import them.
    from comfywatchman.download import paths, policy
    from comfywatchman.download.fetch import Downloader
    from comfywatchman.download.tasks import Task

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the download flags to the command's parser."""
    group = parser.add_argument_group("downloads (manual review is the default; see README, Downloads)")
    group.add_argument("--queue", action="store_true", help="list the download queue: what, where to, from where, "
                       "size, evidence, state and the workflows it unblocks (--json for JSON)")  # fmt: skip
    group.add_argument("--approve", nargs="+", metavar="ID", help="approve these download tasks (ids from --queue)")
    group.add_argument("--approve-proven", action="store_true",
                       help="approve every task proven by a hash (found by hash, or declared with one)")  # fmt: skip
    group.add_argument("--download", action="store_true", help="download the approved tasks, verified, into place")
    group.add_argument("--auto-download", action="store_true",
                       help="also run, without review, what policy trusts (a workflow's declaration or a hash match "
                       "on a trusted host); with --run-cycle the cycle downloads them and scans again")  # fmt: skip
    group.add_argument("--dry-run", action="store_true", help="show what approving or downloading would do; do nothing")


def wanted(args: argparse.Namespace) -> bool:
    """Return whether the command line asks for a download action handled by :func:`run`."""
    alone_auto = args.auto_download and not (args.run_cycle or args.scheduler)
    return bool(args.queue or args.approve or args.approve_proven or args.download or alone_auto)


def cycle_options(args: argparse.Namespace) -> dict[str, Any]:
    """Return the stage options a cycle gets from the download flags."""
    options: dict[str, Any] = {}
    if args.auto_download:
        options["auto_download"] = True
    if args.dry_run:
        options["dry_run"] = True
    return options


def build_downloader(config: Config) -> Downloader:
    """Return the downloader for ``config``: its settings, tokens per host and service address rewriting."""
    from comfywatchman.download.fetch import Downloader, Settings, UrlRewriter

    settings = Settings.from_config(config)
    # The hosts each token goes to are the config loader's (Config.tokens), as for the search's HTTP client.
    return Downloader(settings, dict(config.tokens), UrlRewriter.from_config(config))


def trusted_hosts(config: Config) -> list[str]:
    """Return ``[search] trusted_hosts``."""
    return list(config.data.get("search", {}).get("trusted_hosts", []))


def approve(config: Config, chosen: list[Task], now: datetime, dry_run: bool) -> None:
    """Record a person's approval of ``chosen`` (clearing a failed outcome, so it is tried again)."""
    from comfywatchman.download.state import DownloadState

    for task in chosen:
        print(f"{'would approve' if dry_run else 'approved'} {task.id}  {task.folder}/{task.name}")
    if dry_run or not chosen:
        return
    DownloadState(config.state_dir).update({task.id: approval(task, now) for task in chosen})


def approval(task: Task, now: datetime) -> Callable[[dict[str, Any] | None], dict[str, Any]]:
    """Return the change that records a person's approval of ``task`` (a failed outcome is cleared)."""
    from comfywatchman.download.state import new_record

    def change(old: dict[str, Any] | None) -> dict[str, Any]:
        record = dict(old or new_record(task.id, task.name, task.folder, task.item["url"]))
        record.update(approved_at=now.isoformat(timespec="seconds"), approved_by="user")
        if (record.get("outcome") or {}).get("status") == "failed":
            record["outcome"] = None
        return record

    return change


def _to_approve(args: argparse.Namespace, tasks: list[Task]) -> tuple[list[Task], list[str]]:
    """Return the tasks ``--approve`` names (and, with ``--approve-proven``, every hash-proven one), and an
    error line per id that names no task."""
    from comfywatchman.download import policy
    from comfywatchman.download.tasks import select

    chosen, errors = select(tasks, list(args.approve or []))
    if args.approve_proven and not errors:
        chosen += [t for t in tasks if policy.hash_proven(t.item) and t not in chosen]
    return chosen, errors


def _record_approvals(
    config: Config, tasks: list[Task], chosen: list[Task], now: datetime, dry_run: bool
) -> list[Task]:
    """Record the approval of the ``chosen`` tasks (not on a dry run); return every task as it stands after."""
    from comfywatchman.download.tasks import Task, load

    approve(config, chosen, now, dry_run)
    if chosen and not dry_run:
        return load(config.state_dir)[0]
    if chosen:
        # A dry run shows the downloads as if the approvals had been recorded.
        return [Task(t.id, t.item, t.workflows, approval(t, now)(t.record)) if t in chosen else t for t in tasks]
    return tasks


def _download(
    config: Config,
    planned: list[tuple[Task, policy.Decision, paths.Target | str]],
    clock: Callable[[], datetime],
    dry_run: bool,
) -> int:
    """Run the ``planned`` downloads, printing a line for each and the totals; return the exit code (1 when
    one failed)."""
    from comfywatchman.download import runner
    from comfywatchman.download.state import DownloadState

    downloader = build_downloader(config)
    totals = runner.run(planned, downloader, DownloadState(config.state_dir), clock, dry_run=dry_run)
    for line in totals.lines:
        print(line)
    if not totals.lines:
        print("nothing to download: approve tasks first (--queue lists them)")
    elif not dry_run:
        print(totals.summary())
    return EXIT_FAILED if totals.failed else EXIT_OK


def run(args: argparse.Namespace, config: Config, clock: Callable[[], datetime] = utcnow) -> int:
    """Approve, download and list as the flags ask, in that order; return the exit code (1 when a download
    failed, 2 for an unknown task id)."""
    from comfywatchman.download import review, runner
    from comfywatchman.download.tasks import load

    try:
        tasks, queue = load(config.state_dir)
    except ArtifactError as exc:
        print(f"comfywatchman: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if queue is None:
        print(f"no download queue yet in {config.state_dir}: run a cycle (or --stage search) first")
        return EXIT_OK
    chosen, errors = _to_approve(args, tasks)
    for error in errors:
        print(f"comfywatchman: {error}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    tasks = _record_approvals(config, tasks, chosen, clock(), args.dry_run)
    model_cache = runner.read_model_cache(config.state_dir)
    hosts = trusted_hosts(config)
    planned = runner.plan(tasks, model_cache, auto=bool(args.auto_download), trusted_hosts=hosts)
    code = EXIT_OK
    if (args.download or args.auto_download) and config.offline and not args.dry_run:
        print("comfywatchman: --offline: nothing is downloaded", file=sys.stderr)
        return EXIT_FAILED
    if args.download or args.auto_download:
        code = _download(config, planned, clock, args.dry_run)
        if args.queue:
            planned = runner.plan(load(config.state_dir)[0], model_cache, auto=False, trusted_hosts=hosts)
    if args.queue:
        print(
            json.dumps(review.as_json(planned, hosts), indent=2, ensure_ascii=False)
            if args.json
            else review.as_text(planned, hosts)
        )
    return code
