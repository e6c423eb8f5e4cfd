"""ComfyUI-Manager's ``model-list.json``: a curated list of model files with their download URLs.

A missing file whose exact name (case-insensitive) is on the list is resolved offline with no search: the
list is a declaration by the Manager's maintainers, the second rung of the evidence ladder after the
workflow's own declaration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from comfywatchman.comfy.manager_files import MODEL_LIST, find_manager_file
from comfywatchman.search.base import Evidence, ModelQuery, SearchBackend, SearchContext, SearchResult, Status
from comfywatchman.search.names import is_generic_basename

logger = logging.getLogger(__name__)

SOURCE = "manager_model_list"
FILE_NAME = MODEL_LIST


class ModelList:
    """File name (case-folded) -> the list's entries for it."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("by_name", "source")

    source: str | None
    by_name: dict[str, list[dict[str, Any]]]

    def __init__(self, source: str | None, by_name: dict[str, list[dict[str, Any]]] | None = None) -> None:
        self.source = source
        self.by_name = {} if by_name is None else by_name

    @classmethod
    def load(cls, path: Path | None) -> ModelList:
        """Return the list read from ``path`` (empty when None or unreadable, with a warning)."""
        if path is None:
            return cls(source=None)
        try:
            entries = _read(path)["models"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: cannot read ComfyUI-Manager model list: %s", path, exc)
            return cls(source=None)
        model_list = cls(source=str(path))
        for entry in entries if isinstance(entries, list) else []:
            if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
                continue
            url = entry.get("url")
            # Most URLs start with their scheme as it is: what urlsplit gives for them, without it.
            if not isinstance(url, str) or (
                not url.startswith(("https:", "http:")) and urlsplit(url).scheme not in ("https", "http")
            ):
                continue
            model_list.by_name.setdefault(entry["filename"].casefold(), []).append(entry)
        return model_list

    def resolve(self, query: ModelQuery) -> SearchResult | None:
        """Return FOUND (evidence ``declared``) when the list names exactly this file once; else None.

        A name the list gives with two different URLs is not proof of either, and a generic name
        (``diffusion_pytorch_model.safetensors``) proves nothing; both are left to the backends.
        """
        if is_generic_basename(query.basename):
            return None  # model.safetensors, diffusion_pytorch_model.safetensors...: the name says nothing
        entries = self.by_name.get(query.basename.casefold(), [])
        urls = {e["url"] for e in entries}
        if len(urls) != 1:
            return None
        entry = entries[0]
        return SearchResult(
            name=query.name,
            type=query.folder or _folder_of(entry),
            status=Status.FOUND,
            source=SOURCE,
            evidence=Evidence.DECLARED,
            url=entry["url"],
            size=_size_bytes(entry.get("size")),
            reason=f"listed by ComfyUI-Manager's model list as {entry.get('name', entry['filename'])!r}",
            details={"save_path": entry.get("save_path"), "base": entry.get("base"), "type": entry.get("type")},
        )


class ManagerModelListBackend(SearchBackend):
    """ComfyUI-Manager's model list of the install being checked, read once; NOT_SEARCHED when it does not
    name the file exactly once."""

    name = SOURCE
    needs_network = False
    answers_first = True

    def __init__(self, context: SearchContext, model_list: ModelList | None = None) -> None:
        super().__init__(context)
        self.model_list = model_list or ModelList.load(find_manager_file(context.config.comfyui_root, FILE_NAME))

    def nothing_to_say(self, query: ModelQuery) -> bool:
        """Return whether the list does not name ``query``'s file at all (``ModelList.resolve`` then finds
        nothing): most missing files are not on it, and this is one dict lookup."""
        return query.basename.casefold() not in self.model_list.by_name

    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return FOUND when the list names ``query``'s file exactly once (see ``ModelList.resolve``)."""
        found = self.model_list.resolve(query)
        return found or self.result(query, Status.NOT_SEARCHED, "not on ComfyUI-Manager's model list")


def _read(path: Path) -> Any:
    """Return the JSON document at ``path``: parsed by orjson (a quarter of the standard library's time), or,
    for what orjson refuses (and the standard library may not: NaN, huge integers), by the standard library,
    which raises ValueError for what is not JSON."""
    data = path.read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data.decode("utf-8"))


def _folder_of(entry: dict[str, Any]) -> str | None:
    save_path = str(entry.get("save_path") or "")
    return None if save_path in ("", "default") else save_path.split("/", 1)[0]


def _size_bytes(text: Any) -> int | None:
    """Return Manager's human size (``"4.71MB"``, ``"2.5GB"``) in bytes, or None."""
    if not isinstance(text, str):
        return None
    units = {"KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4, "B": 1}
    cleaned = text.strip().upper().replace(" ", "")
    for unit, factor in units.items():
        if cleaned.endswith(unit):
            try:
                return int(float(cleaned[: -len(unit)]) * factor)
            except ValueError:
                return None
    return None
