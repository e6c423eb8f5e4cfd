"""Months without anyone watching: a wrong root, an unplugged drive, an unreadable folder, a read-only home.

The real CLI in a subprocess. Permission cases run the child with file permissions enforced even as root
(tests/helpers/unprivileged.py).
"""

from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from comfywatchman import artifacts
from comfywatchman.stages import ORDER
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow
from tests.helpers.unprivileged import run_cli_unprivileged

pytestmark = pytest.mark.slow


STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def _unstamped(text: str) -> list[str]:
    """Return the lines of ``text`` (stderr into a pipe) without their timestamps; each must have one."""
    lines = text.strip().splitlines()
    assert all(STAMP.match(line) for line in lines), text
    return [STAMP.sub("", line) for line in lines]


def _report(home: Path) -> dict:
    return artifacts.read(home / "output" / "reports" / "status" / "master_status.json", "master_status")


def _markdown(home: Path) -> str:
    return (home / "output" / "reports" / "status" / "master_status.md").read_text(encoding="utf-8")


def _acknowledged(home: Path) -> list[dict]:
    return list(artifacts.read_jsonl(home / "state" / "intake_log.jsonl", "intake_log_entry"))


def _resolved_at(home: Path) -> dict[str, str | None]:
    return {w["workflow"]: w["last_resolved_at"] for w in _report(home)["workflows"]}


def _three_workflows(tree: ComfyTree) -> None:
    tree.model("checkpoints", "have.safetensors")
    tree.workflow("ready.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["have.safetensors"])]))
    tree.workflow("also_ready.json", ui_workflow([ui_node(1, "KSampler", [])]))
    tree.workflow("missing.json", ui_workflow([ui_node(1, "LoraLoader", ["absent.safetensors", 1, 1])]))


@pytest.mark.parametrize("kind", ["missing", "empty", "not an install"])
def test_a_root_that_is_not_an_install_is_a_config_error_and_writes_nothing(
    kind: str, tmp_path: Path, home: Path
) -> None:
    root = tmp_path / "mnt" / "ComfyUI"
    if kind != "missing":
        root.mkdir(parents=True)
    if kind == "not an install":
        (root / "notes.txt").write_text("a folder of something else")
    result = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(root), home=home)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{root}: " in lines[0] and "--comfyui-root" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert list(home.iterdir()) == []  # no state/, output/ or log/


def test_an_unplugged_drive_keeps_history_and_marks_the_report_stale(comfy_tree: ComfyTree, home: Path) -> None:
    _three_workflows(comfy_tree)
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    first = run_cli(*args, home=home)
    assert first.returncode == 0, first.stderr
    resolved_once = _resolved_at(home)["ready.json"]
    (comfy_tree.root / "models" / "checkpoints" / "have.safetensors").unlink()
    assert run_cli(*args, home=home).returncode == 0
    resolved = _resolved_at(home)  # ready.json was resolved in the first cycle only: that time is history
    assert resolved["ready.json"] == resolved_once is not None and resolved["missing.json"] is None
    acknowledged = _acknowledged(home)
    assert len(acknowledged) == 3
    good = _report(home)

    unplugged = comfy_tree.root.parent / "unplugged"
    comfy_tree.workflows.rename(unplugged)
    during = run_cli(*args, home=home)
    assert during.returncode == 1
    assert f"{comfy_tree.workflows}: workflows folder unavailable this cycle: gone" in during.stderr
    stale = _report(home)
    assert stale["stale"]["unavailable"][0]["folder"] == str(comfy_tree.workflows)
    assert str(comfy_tree.workflows) in stale["stale"]["reason"]
    assert {k: v for k, v in stale.items() if k != "stale"} == {k: v for k, v in good.items() if k != "stale"}
    assert stale["summary"]["workflows"] == 3  # not "0 workflows"
    markdown = _markdown(home).splitlines()
    assert markdown[0].startswith("# ComfyUI readiness") and markdown[2].startswith("> ⚠️ **Stale since")
    intake = artifacts.read(home / "state" / "intake.json", "intake")
    assert intake["removed"] == [] and len(intake["kept"]) == 3
    assert "stale" in during.stdout

    unplugged.rename(comfy_tree.workflows)
    after = run_cli(*args, home=home)
    assert after.returncode == 0, after.stderr
    assert _acknowledged(home) == acknowledged  # nothing acknowledged as new again
    assert _resolved_at(home)["ready.json"] == resolved["ready.json"]  # last_resolved_at did not restart
    assert _report(home)["stale"] is None
    assert "Stale" not in _markdown(home)


def test_an_unreadable_workflows_folder_is_unavailable_for_that_cycle(comfy_tree: ComfyTree, home: Path) -> None:
    _three_workflows(comfy_tree)
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    assert run_cli_unprivileged(*args, home=home).returncode == 0
    resolved_once = _resolved_at(home)["ready.json"]
    (comfy_tree.root / "models" / "checkpoints" / "have.safetensors").unlink()
    assert run_cli_unprivileged(*args, home=home).returncode == 0
    comfy_tree.workflows.chmod(0)
    try:
        during = run_cli_unprivileged(*args, home=home)
    finally:
        comfy_tree.workflows.chmod(0o755)
    assert during.returncode == 1, during.stderr
    assert f"{comfy_tree.workflows}: workflows folder unavailable this cycle: cannot be read: Permission denied" in (
        during.stderr
    )
    assert "Traceback" not in during.stderr
    assert _report(home)["stale"]["reason"].startswith("workflows folder unavailable: ")
    assert _report(home)["summary"]["workflows"] == 3

    after = run_cli_unprivileged(*args, home=home)
    assert after.returncode == 0, after.stderr
    assert len(_acknowledged(home)) == 3 and _resolved_at(home)["ready.json"] == resolved_once is not None


def test_an_unreadable_workflow_file_is_a_finding_and_is_not_removed(comfy_tree: ComfyTree, home: Path) -> None:
    _three_workflows(comfy_tree)
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    assert run_cli_unprivileged(*args, home=home).returncode == 0
    locked = comfy_tree.workflow("missing.json", ui_workflow([ui_node(1, "KSampler", [])]))  # changed: read again
    locked.chmod(0)
    try:
        during = run_cli_unprivileged(*args, home=home)
    finally:
        locked.chmod(0o644)
    # One file's problem is a finding of the report, not a failed cycle: the others were done as usual.
    assert during.returncode == 0, during.stderr
    assert f"intake: cannot read {locked}: unreadable: Permission denied" in during.stderr
    intake = artifacts.read(home / "state" / "intake.json", "intake")
    assert intake["removed"] == [] and [w["path"] for w in intake["kept"]] == [str(locked)]
    assert _report(home)["cycle"]["findings"] == [f"{locked}: unreadable: Permission denied"]
    assert _report(home)["cycle"]["errors"] == [] and _report(home)["summary"]["workflows"] == 2  # the two read
    listed = [line for line in _markdown(home).splitlines() if line.startswith("- not read this cycle: ")]
    assert len(listed) == 1 and listed[0].endswith("missing.json: unreadable: Permission denied"), listed


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_pipes_and_devices_under_file_names_are_findings_and_hold_no_cycle_up(
    comfy_tree: ComfyTree, home: Path
) -> None:
    # Each would block a reader forever (a pipe with no writer) or never end (/dev/zero): a workflow, a model
    # file a workflow uses (its safetensors header is checked), a pack's module and its pyproject.toml.
    _three_workflows(comfy_tree)
    comfy_tree.pack("SomePack", ["SomeNode"])
    comfy_tree.workflow("uses.json", ui_workflow([ui_node(1, "VAELoader", ["pipe.safetensors"])]))
    os.mkfifo(comfy_tree.workflows / "pipe.json")
    (comfy_tree.workflows / "zero.json").symlink_to("/dev/zero")
    (comfy_tree.root / "models" / "vae").mkdir(parents=True, exist_ok=True)
    os.mkfifo(comfy_tree.root / "models" / "vae" / "pipe.safetensors")
    os.mkfifo(comfy_tree.root / "custom_nodes" / "SomePack" / "pyproject.toml")
    (comfy_tree.root / "custom_nodes" / "SomePack" / "more.py").symlink_to("/dev/zero")
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    result = run_cli(*args, home=home, timeout=60)
    assert result.returncode == 0, result.stderr
    for name in ("pipe.json", "zero.json"):
        kind = "a named pipe" if name == "pipe.json" else "a device"
        assert f"{comfy_tree.workflows / name}: unreadable: not a regular file ({kind})" in result.stderr
    assert _report(home)["summary"]["workflows"] == 4  # the four real ones
    broken = {b["name"]: b["reason"] for b in _report(home)["broken_models"]}
    assert broken["pipe.safetensors"] == "unreadable: not a regular file (a named pipe)"
    assert "Traceback" not in result.stderr


def test_names_that_are_not_utf8_are_findings_and_the_rest_is_read(comfy_tree: ComfyTree, home: Path) -> None:
    # Linux file names are bytes; one copied from a Latin-1 system is no UTF-8 text, and no artifact can hold it.
    _three_workflows(comfy_tree)
    comfy_tree.pack("GoodPack", ["GoodNode"])
    odd = [
        bytes(comfy_tree.root / "models" / "loras") + b"/bad\xff.safetensors",
        bytes(comfy_tree.workflows) + b"/w\xe9.json",
        bytes(comfy_tree.root / "custom_nodes") + b"/Pack\xe9",
    ]
    try:
        os.makedirs(os.path.dirname(odd[0]), exist_ok=True)
        Path(os.fsdecode(odd[0])).write_bytes(b"")
        Path(os.fsdecode(odd[1])).write_bytes(b"{}")
        os.mkdir(odd[2])
    except OSError as exc:  # a file system that refuses such names (APFS) cannot have the problem
        pytest.skip(f"this file system refuses names that are not UTF-8: {exc}")
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    for _ in range(2):  # and the cycle after, from what the first one wrote
        result = run_cli(*args, home=home)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr and "crashed" not in result.stderr
    findings = _report(home)["cycle"]["findings"]
    for path in odd:
        said = os.fsdecode(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        assert f"{said}: its name is not UTF-8 text, so it is left out (rename it to use it)" in findings
    assert _report(home)["summary"]["workflows"] == 3


@pytest.mark.parametrize("where", ["home", "state"])
def test_a_read_only_home_is_one_line_and_exit_2(where: str, comfy_tree: ComfyTree, home: Path) -> None:
    args = ("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root))
    locked = home
    if where == "state":
        assert run_cli_unprivileged(*args, home=home).returncode == 0
        locked = home / "state"
    locked.chmod(0o555)
    try:
        result = run_cli_unprivileged(*args, home=home)
    finally:
        locked.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{home / 'state'}: cannot" in lines[0] and "permission denied" in lines[0] and "--home" in lines[0]


def test_a_home_below_a_file_is_one_line_and_exit_2(comfy_tree: ComfyTree, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run_cli(
        "--run-cycle",
        "--force",
        "--offline",
        "--comfyui-root",
        str(comfy_tree.root),
        "--home",
        str(blocker / "cw"),
        home=tmp_path,
    )
    assert result.returncode == 2
    assert _unstamped(result.stderr) == [
        f"comfywatchman: {blocker}: is a file, so the folder {blocker / 'cw' / 'state'} cannot be made; "
        "give --home, COMFYWATCHMAN_HOME or [paths] home a folder you can write"
    ]


def test_run_cycle_json_prints_the_cycle_summary(comfy_tree: ComfyTree, home: Path) -> None:
    _three_workflows(comfy_tree)
    result = run_cli("--run-cycle", "--force", "--offline", "--json", "--comfyui-root", str(comfy_tree.root), home=home)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["exit_code"] == 0 and summary["outcome"] == "success"
    assert summary["cycle_id"] == _report(home)["cycle_id"]
    assert summary["report"]["summary"]["workflows"] == 3 and summary["report"]["stale"] is None
    assert summary["report"]["markdown"].endswith("master_status.md")
    assert [s["stage"] for s in summary["stages"]] == list(ORDER)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _many_missing(tree: ComfyTree, count: int) -> None:
    for index in range(count):
        tree.workflow(f"w{index:02}.json", ui_workflow([ui_node(1, "LoraLoader", [f"lora_{index}.safetensors", 1, 1])]))


def test_a_cron_run_without_civitai_writes_a_few_timestamped_lines(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    _many_missing(comfy_tree, 30)
    config = tmp_path / "cw.toml"
    config.write_text(
        f'[search]\nbackend_order = ["civitai"]\nmax_attempts = 1\n[civitai]\nbase_url = "http://127.0.0.1:{_closed_port()}"\n'
    )
    args = ("--run-cycle", "--force", "--quiet", "--config", str(config), "--comfyui-root", str(comfy_tree.root))
    result = run_cli(*args, home=home, env={"COMFYWATCHMAN_TRIGGER": "cron"})
    assert result.returncode == 0, result.stderr
    warnings = _unstamped(result.stderr)  # every line has its timestamp
    civitai = [line for line in warnings if "civitai" in line]
    assert len(civitai) == 1, result.stderr  # not one per missing file
    assert "(and 29 more like it in the search stage; --verbose shows each)" in civitai[0]
    assert len(warnings) <= 3, result.stderr
    assert _unstamped(result.stdout)[0].startswith("30 workflows: 30 needs review")
    errors = [m for w in _report(home)["workflows"] for m in w["missing_models"] if m["status"] == "ERROR"]
    assert len(errors) == 30  # the per-file detail is in the report

    verbose = run_cli(*args, "--verbose", home=home, env={"COMFYWATCHMAN_TRIGGER": "cron"})
    assert sum("lora_" in line and "civitai" in line for line in verbose.stderr.splitlines()) >= 30


def test_a_terminal_gets_progress_bars_and_a_pipe_does_not(comfy_tree: ComfyTree, home: Path) -> None:
    _many_missing(comfy_tree, 12)
    args = [
        sys.executable,
        "-m",
        "comfywatchman",
        "--run-cycle",
        "--force",
        "--offline",
        "--comfyui-root",
        str(comfy_tree.root),
    ]
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYWATCHMAN_"))}
    master, terminal = pty.openpty()
    child = subprocess.Popen(
        args, cwd=home, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal
    )
    os.close(terminal)
    screen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    stdout, _ = child.communicate(timeout=60)
    assert child.returncode == 0, screen.decode(errors="replace")
    text = screen.decode(errors="replace")
    assert "scan:" in text and "search:" in text and "%|" in text  # the two bars
    assert not STAMP.match(text.lstrip("\r"))  # a terminal gets no timestamps
    assert stdout.decode().startswith(tuple("0123456789"))  # ...but stdout here is a pipe: stamped

    piped = run_cli("--run-cycle", "--force", "--offline", "--comfyui-root", str(comfy_tree.root), home=home)
    assert "%|" not in piped.stderr


def test_trigger_task_scheduler_is_recorded(comfy_tree: ComfyTree, home: Path) -> None:
    result = run_cli(
        "--run-cycle",
        "--force",
        "--offline",
        "--trigger",
        "task-scheduler",
        "--comfyui-root",
        str(comfy_tree.root),
        home=home,
    )
    assert result.returncode == 0, result.stderr
    cycles = list(artifacts.read_jsonl(home / "state" / "cycles.jsonl", "cycle"))
    assert cycles[-1]["trigger"] == "task-scheduler"
    assert json.loads((home / "state" / "scheduler.json").read_text())["last_trigger"] == "task-scheduler"
