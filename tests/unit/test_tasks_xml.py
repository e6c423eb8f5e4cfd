"""tasks.xml: the Windows Task Scheduler definition has the settings the scheduling docs promise."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
TASKS = Path(__file__).resolve().parents[2] / "tasks.xml"


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


def test_tasks_xml_runs_one_guarded_cycle_with_output_to_a_log() -> None:
    root = ET.parse(TASKS).getroot()
    arguments = root.findtext("t:Actions/t:Exec/t:Arguments", namespaces=NS) or ""
    assert "comfywatchman.exe" in arguments and "--run-cycle" in arguments and "--home" in arguments
    assert ">>" in arguments and "2>&1" in arguments
    assert "--force" not in arguments  # a scheduled run is always gated
    assert root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=NS)
    assert root.findtext("t:Principals/t:Principal/t:RunLevel", namespaces=NS) == "LeastPrivilege"
