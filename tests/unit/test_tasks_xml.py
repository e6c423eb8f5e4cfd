"""tasks.xml: the Windows Task Scheduler definition has the settings the scheduling docs promise."""

from __future__ import annotations

import importlib
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from comfywatchman import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
TASKS = Path(__file__).resolve().parents[2] / "tasks.xml"
PYPROJECT = TASKS.parent / "pyproject.toml"


def setting(name: str) -> str:
    node = ET.parse(TASKS).getroot().find(f"t:Settings/t:{name}", NS)
    assert node is not None, f"tasks.xml has no Settings/{name}"
    return (node.text or "").strip()


def test_tasks_xml_repeats_every_two_hours_forever() -> None:
    root = ET.parse(TASKS).getroot()
    triggers = root.findall("t:Triggers/*", NS)
    assert len(triggers) == 1
    assert triggers[0].findtext("t:Repetition/t:Interval", namespaces=NS) == "PT2H"
    assert triggers[0].find("t:Repetition/t:Duration", NS) is None  # no duration: repeats indefinitely
    assert triggers[0].findtext("t:Enabled", namespaces=NS) == "true"


def test_tasks_xml_catches_up_once_and_never_overlaps_or_wakes_the_machine() -> None:
    assert setting("StartWhenAvailable") == "true"
    assert setting("MultipleInstancesPolicy") == "IgnoreNew"
    assert setting("WakeToRun") == "false"
    assert setting("DisallowStartIfOnBatteries") == "false"


def test_tasks_xml_stops_a_cycle_after_a_time_limit() -> None:
    limit = setting("ExecutionTimeLimit")
    match = re.fullmatch(r"PT(\d+)H", limit)
    assert match and 0 < int(match.group(1)) <= 2, limit  # PT0S would mean "no limit"


def _arguments() -> list[str]:
    """Return the task's Arguments split as Windows would (quotes only group, and are dropped)."""
    text = ET.parse(TASKS).getroot().findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) or ""
    return [part.strip('"') for part in re.findall(r'"[^"]*"|\S+', text)]


def test_tasks_xml_runs_the_windowless_command_so_no_console_window_flashes() -> None:
    root = ET.parse(TASKS).getroot()
    command = (root.findtext("t:Actions/t:Exec/t:Command", namespaces=NS) or "").strip()
    assert command.lower().endswith("\\scripts\\comfywatchmanw.exe"), command  # pythonw: no console
    assert "cmd" not in command.lower()  # cmd.exe would open the console window again
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["gui-scripts"]
    module, _, name = scripts["comfywatchmanw"].partition(":")
    assert callable(getattr(importlib.import_module(module), name))


def test_tasks_xml_runs_one_guarded_cycle_recorded_as_task_scheduler() -> None:
    root = ET.parse(TASKS).getroot()
    args = cli.build_parser().parse_args(_arguments())  # every option exists and parses
    assert args.run_cycle and not args.force  # a scheduled run is always gated
    assert args.trigger == "task-scheduler"
    assert args.home is not None
    assert str(args.home) == root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=NS)
    assert ">>" not in _arguments()  # no shell: comfywatchmanw writes log/task.log itself
    assert root.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=NS) == "LeastPrivilege"
