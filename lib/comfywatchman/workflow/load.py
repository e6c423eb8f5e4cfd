"""Reading a workflow file into a dict and telling which format it is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from comfywatchman.errors import WatchmanError

Format = Literal["ui", "api"]


class WorkflowError(WatchmanError):
    """A file that cannot be read as a workflow; the message names the file and says what is wrong."""


@dataclass(frozen=True)
class Workflow:
    """A parsed workflow: its format and its JSON data."""

    format: Format
    data: dict[str, Any]


def detect_format(data: Any) -> Format | None:
    """Return ``"ui"`` for a saved UI workflow, ``"api"`` for an API prompt, None for anything else."""
    if isinstance(data, dict):
        if isinstance(data.get("nodes"), list):
            return "ui"
        if data and all(isinstance(v, dict) and "class_type" in v for v in data.values()):
            return "api"
        # Some tools save {"prompt": {...}, "workflow": {...}}; the UI form carries more (positions, models).
        for key in ("workflow", "prompt"):
            if key in data and detect_format(data[key]) is not None:
                return detect_format(data[key])
    return None


def parse_bytes(raw: bytes, path: Path) -> Workflow:
    """Return the workflow held by ``raw`` (the content of ``path``).

    Raise WorkflowError naming ``path`` when it is empty, not UTF-8 JSON, or JSON that is not a workflow.
    """
    if not raw.strip():
        raise WorkflowError(f"{path}: empty file")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise WorkflowError(f"{path}: not a text file (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return from_data(data, path)


def from_data(data: Any, path: Path) -> Workflow:
    """Return ``data`` as a Workflow, unwrapping ``{"workflow": ...}`` containers; raise WorkflowError if none."""
    fmt = detect_format(data)
    if fmt is None:
        kind = type(data).__name__ if not isinstance(data, dict) else "an object without 'nodes' or 'class_type' entries"
        raise WorkflowError(f"{path}: JSON is not a ComfyUI workflow (found {kind})")
    if isinstance(data, dict) and "nodes" not in data and not all(
        isinstance(v, dict) and "class_type" in v for v in data.values()
    ):
        inner = data.get("workflow") if detect_format(data.get("workflow")) else data.get("prompt")
        return Workflow(detect_format(inner), inner)  # type: ignore[arg-type]
    return Workflow(fmt, data)


def load(path: Path) -> tuple[Workflow, bytes]:
    """Return the workflow in the file at ``path`` and the file's bytes; raise WorkflowError if unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise WorkflowError(f"{path}: file vanished before it could be read") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: unreadable: {exc.strerror or exc}") from None
    return parse_bytes(raw, path), raw
