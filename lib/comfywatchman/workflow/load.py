"""Reading a workflow file (JSON, or a PNG / WebP image carrying one) into a dict and telling its format.

Every file is read within a bound: at most ``max_bytes`` of it (``[scan] max_workflow_mb``), JSON nested at
most MAX_DEPTH levels, and only strings UTF-8 can hold come out, so whatever a file holds, what is read from
it can be written into ``scan.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

from comfywatchman import regular_files
from comfywatchman.errors import WatchmanError
from comfywatchman.workflow import images

_orjson_loads: Callable[[bytes | str], Any] | None
try:
    from orjson import loads as _orjson_loads
except ImportError:  # a speed-up only: the standard library parses the same documents
    _orjson_loads = None

Format = Literal["ui", "api"]
# Deeper than any workflow, and orjson's own limit: the standard parser would recurse past Python's stack.
MAX_DEPTH = 1024
# Unwrapping {"workflow": {...}} containers: real tools nest one level.
MAX_UNWRAP = 4
_SURROGATES = range(0xD800, 0xE000)


class WorkflowError(WatchmanError):
    """A file that cannot be read as a workflow; the message names the file and says what is wrong."""


class NotAWorkflow(WorkflowError):
    """An image that carries no workflow at all (a plain picture in the workflows folder): not an error."""


# A NamedTuple, not a frozen dataclass: every cycle's process makes this class, and a dataclass costs it ~0.4 ms
# to make (Python 3.11), a NamedTuple a tenth of that.
class Workflow(NamedTuple):
    """A parsed workflow: its format, its JSON data, and the container it came in (json, png, webp)."""

    format: Format
    data: dict[str, Any]
    container: str = "json"


def _is_api(data: dict[str, Any]) -> bool:
    return bool(data) and all(isinstance(v, dict) and "class_type" in v for v in data.values())


def _format_here(data: Any) -> Format | None:
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("nodes"), list):
        return "ui"
    return "api" if _is_api(data) else None


def _unwrap(data: Any, depth: int = MAX_UNWRAP) -> tuple[Format, dict[str, Any]] | None:
    """Return the format and the workflow itself inside ``data`` (through at most ``depth`` containers)."""
    fmt = _format_here(data)
    if fmt is not None:
        return fmt, data
    if not isinstance(data, dict) or depth <= 0:
        return None
    # Some tools save {"prompt": {...}, "workflow": {...}}; the UI form carries more (positions, models).
    for key in ("workflow", "prompt"):
        found = _unwrap(data.get(key), depth - 1)
        if found is not None:
            return found
    return None


def loads(raw: bytes | str) -> Any:
    """Return the JSON value in ``raw``: orjson when installed (parsing is most of a cold scan), else json.

    Anything orjson refuses goes through the standard parser too: it accepts what Python's own json.dumps
    writes (NaN, Infinity) and words the errors users see (message, line and column). Strings it lets through
    that UTF-8 cannot hold (a lone surrogate such as ``"\\ud800"``, which JavaScript writes for an emoji cut in
    half) come back with U+FFFD in its place, so every name read can be written out again.

    Raise ValueError (json.JSONDecodeError for syntax) for what neither accepts, nesting deeper than
    MAX_DEPTH included.
    """
    if _orjson_loads is not None:
        try:
            return _orjson_loads(raw)
        except ValueError as exc:
            if "depth" in str(exc) or "recursion" in str(exc):
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    if _too_deep(raw):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    return _without_surrogates(data)


def _too_deep(raw: bytes | str) -> bool:
    """Return whether ``raw`` opens more than MAX_DEPTH brackets at once, outside strings."""
    text = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if text.count(b"[") + text.count(b"{") <= MAX_DEPTH:
        return False  # the common case, decided without a byte loop
    depth = 0
    in_string = escaped = False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def clean_text(text: str) -> str:
    """Return ``text`` with each lone surrogate (which UTF-8 cannot hold) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if ord(ch) in _SURROGATES else ch for ch in text)
    return text


def _without_surrogates(data: Any) -> Any:
    """Return ``data`` with every lone surrogate in its strings and keys replaced (walked without recursion)."""
    if isinstance(data, str):
        return clean_text(data)
    pending: list[Any] = [data] if isinstance(data, (dict, list)) else []
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key in [k for k in item if clean_text(k) is not k]:
                item[clean_text(key)] = item.pop(key)
        slots = item.items() if isinstance(item, dict) else enumerate(item)
        for slot, value in list(slots):
            if isinstance(value, str):
                item[slot] = clean_text(value)
            elif isinstance(value, (dict, list)):
                pending.append(value)
    return data


def parse_bytes(raw: bytes, path: Path) -> Workflow:
    """Return the workflow held by ``raw`` (the content of ``path``): JSON, or a PNG / WebP carrying one.

    Raise NotAWorkflow for an image without any workflow text, WorkflowError naming ``path`` when it is
    empty, not UTF-8 JSON, nested too deep, or JSON that is not a workflow.
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
    except ValueError as exc:  # nesting, or a number Python refuses (an integer of thousands of digits)
        raise WorkflowError(f"{path}: invalid JSON ({exc})") from None
    return from_data(data, path)


def _from_image(raw: bytes, path: Path, container: str) -> Workflow:
    try:
        texts = images.embedded_texts(raw)
    except images.ImageError as exc:
        raise WorkflowError(f"{path}: broken {container.upper()} image: {exc}") from None
    if not texts:
        raise NotAWorkflow(f"{path}: {container.upper()} image without an embedded workflow or prompt")
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
    found = _unwrap(data)
    if found is None:
        kind = "an object without 'nodes' or 'class_type' entries" if isinstance(data, dict) else type(data).__name__
        raise WorkflowError(f"{path}: JSON is not a ComfyUI workflow (found {kind})")
    return Workflow(*found)


def load(path: Path, max_bytes: int | None = None) -> tuple[Workflow, bytes]:
    """Return the workflow in the file at ``path`` and the file's bytes; raise WorkflowError if unreadable or
    larger than ``max_bytes``."""
    try:
        # A pipe or a device put where a workflow was (after intake listed it) is refused, never waited on.
        raw = regular_files.read_regular(path, None if max_bytes is None else max_bytes + 1)
    except FileNotFoundError:
        raise WorkflowError(f"{path}: file vanished before it could be read") from None
    except OSError as exc:
        raise WorkflowError(f"{path}: unreadable: {exc.strerror or exc}") from None
    if max_bytes is not None and len(raw) > max_bytes:
        limit = f"{max_bytes / 1e6:g} MB"
        raise WorkflowError(f"{path}: larger than {limit}, the limit for a workflow file ([scan] max_workflow_mb)")
    return parse_bytes(raw, path), raw
