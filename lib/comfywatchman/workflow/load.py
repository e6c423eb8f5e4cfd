"""Reading a workflow file (JSON, or a PNG / WebP image carrying one) into a dict and telling its format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from comfywatchman.errors import WatchmanError
from comfywatchman.workflow import images

try:
    from orjson import loads as _orjson_loads
except ImportError:  # a speed-up only: the standard library parses the same documents
    _orjson_loads = None

Format = Literal["ui", "api"]


class WorkflowError(WatchmanError):
    """A file that cannot be read as a workflow; the message names the file and says what is wrong."""


@dataclass(frozen=True)
class Workflow:
    """A parsed workflow: its format, its JSON data, and the container it came in (json, png, webp)."""

    format: Format
    data: dict[str, Any]
    container: str = "json"


def _is_api(data: dict[str, Any]) -> bool:
    return bool(data) and all(isinstance(v, dict) and "class_type" in v for v in data.values())


def detect_format(data: Any) -> Format | None:
    """Return ``"ui"`` for a saved UI workflow, ``"api"`` for an API prompt, None for anything else."""
    if isinstance(data, dict):
        if isinstance(data.get("nodes"), list):
            return "ui"
        if _is_api(data):
            return "api"
        # Some tools save {"prompt": {...}, "workflow": {...}}; the UI form carries more (positions, models).
        for key in ("workflow", "prompt"):
            if key in data and detect_format(data[key]) is not None:
                return detect_format(data[key])
    return None


def loads(raw: bytes | str) -> Any:
    """Return the JSON value in ``raw``: orjson when installed (parsing is most of a cold scan), else json.

    Anything orjson refuses goes through the standard parser too: it accepts what Python's own json.dumps
    writes (NaN, Infinity) and words the errors users see (message, line and column).
    """
    if _orjson_loads is not None:
        try:
            return _orjson_loads(raw)
        except ValueError:
            pass
    return json.loads(raw)


def parse_bytes(raw: bytes, path: Path) -> Workflow:
    """Return the workflow held by ``raw`` (the content of ``path``): JSON, or a PNG / WebP carrying one.

    Raise WorkflowError naming ``path`` when it is empty, not UTF-8 JSON, an image without a workflow, or
    JSON that is not a workflow.
    """
    container = images.kind(raw)
    if container is not None:
        return _from_image(raw, path, container)
    if not raw.strip():
        raise WorkflowError(f"{path}: empty file")
    try:
        data = loads(raw)
    except UnicodeDecodeError:
        raise WorkflowError(f"{path}: not a text file (not UTF-8)") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return from_data(data, path)


def _from_image(raw: bytes, path: Path, container: str) -> Workflow:
    try:
        texts = images.embedded_texts(raw)
    except images.ImageError as exc:
        raise WorkflowError(f"{path}: broken {container.upper()} image: {exc}") from None
    if not texts:
        raise WorkflowError(f"{path}: {container.upper()} image without an embedded workflow or prompt")
    problems = []
    # The UI workflow first: it carries subgraphs, declarations and modes the API prompt has lost.
    for key in images.KEYS:
        if key not in texts:
            continue
        try:
            workflow = from_data(loads(texts[key]), path)
        except (ValueError, WorkflowError) as exc:
            problems.append(f"{key}: {str(exc).removeprefix(f'{path}: ')}")
            continue
        return Workflow(workflow.format, workflow.data, container)
    raise WorkflowError(f"{path}: {container.upper()} metadata holds no readable workflow ({'; '.join(problems)})")


def from_data(data: Any, path: Path) -> Workflow:
    """Return ``data`` as a Workflow, unwrapping ``{"workflow": ...}`` containers; raise WorkflowError if none."""
    fmt = detect_format(data)
    if fmt is None:
        kind = "an object without 'nodes' or 'class_type' entries" if isinstance(data, dict) else type(data).__name__
        raise WorkflowError(f"{path}: JSON is not a ComfyUI workflow (found {kind})")
    if "nodes" not in data and not _is_api(data):
        inner = data.get("workflow") if detect_format(data.get("workflow")) else data.get("prompt")
        return Workflow(fmt, inner)
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
