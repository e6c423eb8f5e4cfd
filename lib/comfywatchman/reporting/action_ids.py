"""How master_status.json names and orders its actions: an id ``KIND:KEY`` that workflow entries refer to,
and one ranking (most workflows unblocked first), shared by the report's modules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def action_id(kind: str, item_key: str) -> str:
    """Return the id of an action: ``KIND:KEY`` (a file's key is ``FOLDER/NAME``, a pack's its repository or
    name, a node type's its class, a workflow's its path, a drifted file's ``PATH#SHA256`` (``drift_action_id``)."""
    return f"{kind}:{item_key}"


def drift_action_id(finding: Mapping[str, Any]) -> str:
    """Return the id of the ``replace_drift`` action for one drifted file and its expected hash (its first 16
    hex digits: the id is repeated in every workflow that needs the file)."""
    return action_id("replace_drift", f"{finding['path']}#{finding['expected_sha256'][:16]}")


def ranked(actions: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return ``actions`` most unblocking first, then by kind, item and id (the same order every cycle)."""
    return sorted(actions, key=lambda a: (-a["blocks"], a["kind"], a["item"], a["id"]))
