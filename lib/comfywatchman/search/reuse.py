"""The answers of the last search that still stand, so a cycle where one workflow changed searches only what
is new.

An answer that needs no network is fixed by its inputs: the file's name, folder and declarations (the query),
and what every such answer is made under (``basis``: the search settings, ``--offline``, the backend order, the
Manager's model list as it is on disk, this version of the code). With ``--offline`` every answer is such an
answer; online only INVALID_FILENAME is (the others come from the network or the search cache, which keeps
them itself).

The search stage records, with its inputs (``state/search_inputs.json``, ``extra``), the basis and, for each
result line of ``search.json`` in order, the key of its query (null for an answer that must be asked again).
The next search reads the lines whose key it wants again from that search.json, when the file is still the
one it wrote (its size and mtime as recorded): ``write_assembled`` puts each result on a line of its own, and
``workflows``, the one part of a result that is not the answer, is its last key.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import __version__, artifacts, stage_inputs
from comfywatchman.search.base import ModelQuery

logger = logging.getLogger(__name__)

# Bump when what an answer is made of changes without the code's version changing.
FORMAT = 1
_WORKFLOWS = ',"workflows":['
_STATUS = ',"status":"'


def basis(settings: Mapping[str, Any], model_list: Path | None) -> str:
    """Return the hash of what every answer without network is made under: ``settings`` (the search section,
    --offline, the backend order), the Manager's model list (its path, size and mtime) and the code."""
    listed = [str(model_list), stage_inputs.stat_key(model_list)] if model_list is not None else None
    return artifacts.content_hash(
        {"format": FORMAT, "version": __version__, "settings": dict(settings), "model_list": listed}
    )


def query_key(query: ModelQuery) -> str:
    """Return the key of what ``query`` is answered from: its name, folder and declarations, in order."""
    declarations = (
        [(d.name, d.url, d.directory, d.hash, d.hash_type) for d in query.declarations] if query.declarations else []
    )
    return hashlib.blake2b(orjson.dumps([query.name, query.folder, declarations]), digest_size=12).hexdigest()


def without_workflows(line: str) -> str | None:
    """Return the compact text of a search.json result without its last key ``workflows`` (and without the
    closing brace), or None when ``line`` is not such a text.

    ``,"workflows":[`` cannot occur inside a string of the text (a quote in a string is escaped), and a
    nested ``workflows`` key (in ``details``) comes before the result's own, which is last: the last one is
    the result's."""
    cut = line.rfind(_WORKFLOWS)
    return line[:cut] if cut > 0 and line.endswith("]}") else None


def with_workflows(prefix: str, workflows: Sequence[str]) -> str:
    """Return the result text ``prefix`` (from ``without_workflows``) completed with ``workflows``."""
    return f'{prefix},"workflows":{orjson.dumps(list(workflows)).decode("utf-8")}}}'


def status_of(prefix: str) -> str:
    """Return the ``status`` of the result text ``prefix``: the last ``status`` key of the text, the
    result's own (``attempts`` and ``candidates``, which hold others, sort before it; ``type`` and ``url``,
    after it, are strings)."""
    start = prefix.rfind(_STATUS) + len(_STATUS)
    return prefix[start : prefix.index('"', start)]


def previous_answers(
    state_dir: Path,
    search_path: Path,
    wanted_basis: str,
    wanted: Iterable[str],
    recorded: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """Return query key -> result text (``without_workflows``) of the last search's reusable answers whose key
    is in ``wanted``; empty when there is no last search, it was made under another basis, or search.json is
    no longer the file it wrote. ``recorded``: the last search's record, read here when not given."""
    if recorded is None:
        recorded = stage_inputs.previous(state_dir, "search")
    extra = (recorded or {}).get("extra") or {}
    keys = extra.get("keys")
    if recorded is None or extra.get("basis") != wanted_basis or not isinstance(keys, list):
        return {}
    if recorded["outputs"].get(str(search_path)) != stage_inputs.stat_key(search_path):
        return {}
    wanted_keys = set(wanted)
    found: dict[str, str] = {}
    try:
        with search_path.open("rb") as handle:
            handle.readline()  # the head, up to the list of results
            for key in keys:
                line = handle.readline()
                if line.startswith(b"]") or not line:
                    return {}  # fewer lines than keys: not the layout recorded
                if key in wanted_keys:
                    prefix = without_workflows(line.rstrip(b"\n").removesuffix(b",").decode("utf-8"))
                    if prefix is None:
                        return {}
                    found[key] = prefix
            if not handle.readline().startswith(b"]"):
                return {}
    except (OSError, UnicodeDecodeError) as exc:
        logger.debug("%s: last answers not reused: %s", search_path, exc)
        return {}
    return found
