"""The ``comfywatchman`` command: results on stdout, diagnostics on stderr, exit codes 0/1/2/75."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from comfywatchman import __version__, artifacts, config_cache, cycle, logsetup, preflight, stage_runner
from comfywatchman.config import Config
from comfywatchman.download import cli as download_cli
from comfywatchman.errors import EXIT_OK, EXIT_USAGE, ConfigError
from comfywatchman.reporting import cycle_summary
from comfywatchman.stages import ORDER

logger = logging.getLogger("comfywatchman")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``comfywatchman`` command."""
    parser = argparse.ArgumentParser(
        prog="comfywatchman",
        description="Keep a ComfyUI install ready: scan every workflow for the models and custom nodes it "
        "needs, find what is missing, and write a master status report.",
        epilog="Exit codes: 0 done, 1 something failed (the rest still ran), 2 bad usage or config, "
        "75 skipped by the gate (not an error).",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--run-cycle",
        action="store_true",
        help="run one guarded cycle (gate, cache, intake, scan, search, verify, report)",
    )
    action.add_argument("--stage", choices=ORDER, help="run one stage alone (what `make scan` and friends call)")
    action.add_argument(
        "--list-intake",
        nargs="?",
        type=int,
        const=-1,
        metavar="N",
        help="print the last N workflow acknowledgments (default [intake] list_default)",
    )
    action.add_argument(
        "--scheduler",
        action="store_true",
        help="run a guarded cycle every [schedule] interval_minutes, in the foreground, until "
        "SIGTERM or Ctrl-C (for machines without cron; see docs/technical/scheduling.md)",
    )
    action.add_argument(
        "--scheduler-status",
        action="store_true",
        help="print when the next cycle is due, how the last one ended, and whether a "
        "--scheduler loop runs (--json for JSON)",
    )
    action.add_argument("--version", action="version", version=f"comfywatchman {__version__}")
    parser.add_argument("--config", type=Path, metavar="FILE", help="your TOML config (else COMFYWATCHMAN_CONFIG)")
    parser.add_argument(
        "--comfyui-root", type=Path, metavar="DIR", help="the ComfyUI install (else COMFYUI_ROOT, else the demo)"
    )
    parser.add_argument(
        "--home",
        type=Path,
        metavar="DIR",
        help="where state/, output/ and log/ live (else COMFYWATCHMAN_HOME, else [paths] home, else your data folder)",
    )
    parser.add_argument("--offline", action="store_true", help="no network at all; unresolved files are NOT_SEARCHED")
    parser.add_argument(
        "--force",
        action="store_true",
        help="manual run: skip the gate's awake, VRAM and ComfyUI-busy checks (never the lock)",
    )
    parser.add_argument(
        "--backends", metavar="A,B", help="search backends for this run, in order (overrides search.backend_order)"
    )
    parser.add_argument("--json", action="store_true", help="print listings and the --run-cycle summary as JSON")
    parser.add_argument(
        "--trigger",
        choices=cycle.TRIGGERS,
        help="what started this cycle, as cycles.jsonl records it (else COMFYWATCHMAN_TRIGGER, else manual); "
        "tasks.xml passes task-scheduler",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug diagnostics on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    download_cli.add_arguments(parser)
    return parser


def list_intake(config: Config, count: int, as_json: bool) -> int:
    """Print the last ``count`` acknowledgments from ``state/intake_log.jsonl`` (-1: the configured number);
    return the exit code (2 for a count below -1)."""
    if count < -1:
        print("comfywatchman: --list-intake N needs N >= 0", file=sys.stderr)
        return EXIT_USAGE
    limit = config.section("intake")["list_default"] if count < 0 else count
    records = (
        list(deque(artifacts.read_jsonl(config.state_dir / "intake_log.jsonl", "intake_log_entry"), maxlen=limit))
        if limit
        else []
    )
    if as_json:
        print(json.dumps(records, indent=2, ensure_ascii=False))
        return EXIT_OK
    if not records:
        print(f"no workflow acknowledged yet in {config.state_dir / 'intake_log.jsonl'}")
        return EXIT_OK
    width = max(len(r["source"]) for r in records)
    print(f"{'acknowledged at':<25}  {'kind':<7}  {'source':<{width}}  path")
    for record in records:
        print(f"{record['ts']:<25}  {record['kind']:<7}  {record['source']:<{width}}  {record['path']}")
    return EXIT_OK


def scheduler_status(config: Config, as_json: bool) -> int:
    """Print the persisted scheduler state (``state/scheduler.json``) for people or as JSON; return 0."""
    from comfywatchman import schedule_status  # imported by the command that uses it, as scheduler is

    status = schedule_status.describe_status(config, datetime.now(timezone.utc))
    print(json.dumps(status, indent=2, sort_keys=True) if as_json else schedule_status.format_status(status))
    return EXIT_OK


def backend_order(text: str) -> tuple[tuple[str, ...], list[str]]:
    """Return the search backends named in ``--backends`` text (comma-separated) in order, and an error line
    for each name or order the config would refuse (empty when there is none)."""
    from comfywatchman.config import Layer, check_backends
    from comfywatchman.search.registry import known_backends

    order = [b.strip() for b in text.split(",") if b.strip()]
    wanted_order = {"search": {"backend_order": order}}
    return tuple(order), check_backends([Layer("--backends", wanted_order)], wanted_order, known_backends())


def _run(args: argparse.Namespace, config: Config, backends: tuple[str, ...] | None) -> int:
    """Run the stage, the scheduler loop or the guarded cycle the checked command line ``args`` asks for;
    return the exit code."""
    if config.using_demo:
        logger.warning(
            "no ComfyUI install configured (comfyui.root, COMFYUI_ROOT, --comfyui-root): using the demo at %s",
            config.comfyui_root,
        )
    if args.stage:
        return stage_runner.run_single_stage(args.stage, config, force=args.force, backends=backends)
    if args.scheduler:
        from comfywatchman import scheduler  # the loop (signals, the awake tracker) only when it runs

        return scheduler.run_loop(config, backends=backends)
    trigger = args.trigger or cycle.trigger_from_env()
    result = cycle.guarded_cycle(
        config, force=args.force, backends=backends, trigger=trigger, **download_cli.cycle_options(args)
    )
    cycle_summary.emit(cycle_summary.build(config, result.cycle_id, result.exit_code), args.json)
    return result.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logsetup.configure(args.verbose, args.quiet)
    wanted = (
        args.run_cycle,
        args.stage,
        args.list_intake is not None,
        args.scheduler,
        args.scheduler_status,
        download_cli.wanted(args),
    )
    if not any(wanted):
        parser.print_usage(sys.stderr)
        print(
            "comfywatchman: nothing to do: give --run-cycle, --scheduler, --stage NAME, --list-intake, --queue or "
            "--download",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.scheduler and args.force:
        print("comfywatchman: --force is for one manual run, not for the --scheduler loop", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = config_cache.load(
            args.config, flags={"comfyui_root": args.comfyui_root, "home": args.home, "offline": args.offline}
        )
    except ConfigError as exc:
        for message in exc.messages:
            print(f"comfywatchman: {message}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return _command(args, config)
    finally:
        config_cache.save_pending()  # a first cycle has made the state folder the cache goes in


def _command(args: argparse.Namespace, config: Config) -> int:
    """Run what the checked command line ``args`` asks for with ``config``; return the exit code."""
    backends: tuple[str, ...] | None = None
    if args.backends:
        backends, errors = backend_order(args.backends)
        if errors:
            for error in errors:
                print(f"comfywatchman: {error}", file=sys.stderr)
            return EXIT_USAGE
    if args.list_intake is not None:
        return list_intake(config, args.list_intake, args.json)
    if args.scheduler_status:
        return scheduler_status(config, args.json)
    problem = preflight.problem(config)
    if problem:
        print(f"comfywatchman: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if download_cli.wanted(args):
        return download_cli.run(args, config)
    return _run(args, config, backends)


if __name__ == "__main__":
    sys.exit(main())
