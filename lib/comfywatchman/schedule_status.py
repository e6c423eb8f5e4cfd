"""``--scheduler-status``: what ``state/scheduler.json`` and the loop's lock say, as data and as text."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from comfywatchman import humanize
from comfywatchman.config import Config
from comfywatchman.lock import probe_held
from comfywatchman.state_manager import StateManager


def parse_time(text: str | None) -> datetime | None:
    """Return the ISO 8601 time ``text`` (UTC when it has no offset), or None when absent or not a time."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def iso(value: datetime) -> str:
    """Return ``value`` as the ISO 8601 text state files hold (to the second)."""
    return value.isoformat(timespec="seconds")


def describe_status(config: Config, now: datetime) -> dict[str, Any]:
    """Return what ``--scheduler-status`` shows: ``scheduler.json`` (all nulls when absent) plus whether a
    loop runs now (``loop_running``, from its lock) and the seconds until the next run (``due_in_s``)."""
    document = StateManager(config.state_dir).scheduler_document()
    due = parse_time(document.get("next_run_at"))
    running = probe_held(config.state_dir / "scheduler.lock")
    return {
        **document,
        "loop_running": running,
        "due_in_s": None if due is None else round((due - now).total_seconds()),
        "state_file": str(StateManager(config.state_dir).scheduler_path),
    }


def format_status(status: dict[str, Any]) -> str:
    """Return ``describe_status``'s result as a few lines for people."""
    lines = []
    if status["loop_running"]:
        lines.append(
            f"scheduler loop: running (pid {status.get('loop_pid')}, "
            f"since {status.get('loop_started_at')}), {status.get('loop_state') or 'waiting'}"
        )
    elif status.get("loop_stopped_at"):
        lines.append(f"scheduler loop: not running (last one stopped at {status['loop_stopped_at']})")
    else:
        lines.append("scheduler loop: not running")
    if status["next_run_at"]:
        due = status["due_in_s"]
        when = "overdue" if due is not None and due <= 0 else f"in {humanize.duration(due or 0)}"
        why = f", {status['next_run_reason'].replace('_', '-')}" if status.get("next_run_reason") else ""
        lines.append(f"next run:       {status['next_run_at']} ({when}{why})")
    else:
        lines.append("next run:       not scheduled (no cycle recorded yet)")
    if status["last_run_at"]:
        trigger = f", {status['last_trigger']}" if status.get("last_trigger") else ""
        lines.append(f"last run:       {status['last_run_at']} ({status['last_outcome']}{trigger})")
    if status["last_skip_reason"]:
        lines.append(f"skipped because: {status['last_skip_reason']}")
    if status.get("last_error"):
        lines.append(f"last error:     {status['last_error']}")
    lines.append(f"state:          {status['state_file']}")
    return "\n".join(lines)
