"""``comfywatchmanw``: the command Windows Task Scheduler runs, which opens no console window.

pip installs it as a GUI launcher (``[project.gui-scripts]`` in pyproject.toml: ``comfywatchmanw.exe`` runs
under pythonw), so no console window flashes up every two hours. Such a process has no stdout and no stderr
(Python sets both to None), so this command appends its output to ``<home>/log/task.log``, each line with a
UTC timestamp. The home is the one the command line and config name (``--home``, ``COMFYWATCHMAN_HOME``,
``[paths] home``), else the user's data folder; tasks.xml names one with ``--home``. Where stdout and
stderr exist (run from a shell, or on Linux and macOS, where it is a plain script) they are used as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from comfywatchman import cli
from comfywatchman.errors import EXIT_USAGE, ConfigError

LOG_NAME = "task.log"


def log_path(argv: Iterable[str], env: Mapping[str, str], cwd: Path) -> Path:
    """Return where ``argv``'s output goes when there is no console: ``log/task.log`` of its home."""
    from comfywatchman.config import expand_path, load

    try:
        args, _ = cli.build_parser().parse_known_args(list(argv))
    except SystemExit:  # a usage error: the log of the working folder will say what it was
        return cwd / "log" / LOG_NAME
    try:
        home = load(args.config, env=env, flags={"home": args.home}, cwd=cwd).home
    except ConfigError:  # the config is broken: cli.main says how, into the log of --home or the working folder
        home = expand_path(str(args.home), env, cwd) if args.home else cwd
    return home / "log" / LOG_NAME


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) like ``comfywatchman``, sending output to the
    log file when there is no console; return the exit code (Task Scheduler's "Last Run Result")."""
    args = list(sys.argv[1:] if argv is None else argv)
    if sys.stdout is None or sys.stderr is None:
        path = log_path(args, os.environ, Path.cwd())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - open until the process ends
        except OSError:
            return EXIT_USAGE  # no console and no log file: nowhere to say more
        sys.stdout = sys.stdout or handle
        sys.stderr = sys.stderr or handle
    return cli.main(args)
