"""The verify stage's findings in the master status report: drift and alternatives already on disk.

Kept apart from ``status_report`` so the report's layout can change without touching them: ``drift_ids``
names, per workflow, the ``replace_drift`` actions of its drifted files (drift makes a workflow
``needs_review``), ``merge_actions`` adds those actions and the installed variants next to each action for a
missing file, then ranks every action again by the workflows it touches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.reporting.action_ids import drift_action_id, ranked
from comfywatchman.reporting.answers import key

logger = logging.getLogger(__name__)

ARTIFACT = "verify.json"


def load(state_dir: Path) -> dict[str, Any] | None:
    """Return ``verify.json``, or None when the verify stage has not written one (or it is unreadable, with
    a warning naming the file)."""
    path = state_dir / ARTIFACT
    try:
        # Parsed from its bytes (a megabyte: no text decoded first); what orjson refuses is read again by
        # ``artifacts.read``, which says what is wrong.
        document: Any = orjson.loads(path.read_bytes())
        artifacts.validate(document, "verify", str(path))
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError):
        try:
            document = artifacts.read_optional(path, "verify")
        except ArtifactError as exc:
            logger.warning("%s; the report has no drift findings", exc)
            return None
    except ArtifactError as exc:
        logger.warning("%s; the report has no drift findings", exc)
        return None
    return document  # type: ignore[no-any-return]


def drift_ids(verify: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Return workflow name -> the ids of the ``replace_drift`` actions of the drifted files it needs (each
    makes the workflow at least ``needs_review``: ``status_report.workflow_record``)."""
    found: dict[str, list[str]] = {}
    for finding in (verify or {}).get("drift", []):
        aid = drift_action_id(finding)
        for name in finding["workflows"]:
            found.setdefault(name, []).append(aid)
    return found


def drift_ids_of(verify: Mapping[str, Any] | None, workflow: str) -> list[str]:
    """Return ``drift_ids(verify)``'s entry for the workflow named ``workflow`` alone (a report that works out a
    few workflows looks for them, not for every workflow of every drifted file)."""
    return [drift_action_id(f) for f in (verify or {}).get("drift", []) if workflow in f["workflows"]]


def block(verify: Mapping[str, Any]) -> dict[str, Any]:
    """Return the report's ``verification`` block: progress, budget, and how many drifted files and missing
    files with a variant on disk there are."""
    return {
        "progress": verify["progress"],
        "budget_bytes": verify["budget_bytes"],
        "drift": len(verify["drift"]),
        "alternatives": len(verify["alternatives"]),
        "cycle_id": verify["cycle_id"],
    }


def drift_detail(finding: Mapping[str, Any]) -> str:
    """Return, in words, how a drifted file differs from what is expected."""
    source = "the workflow declares" if finding["hash_source"] == "declared" else "its source publishes"
    if finding["kind"] == "truncated":
        expected = f" of {finding['expected_size']} bytes" if finding["expected_size"] else ""
        return (
            f"cut short: {finding['size']} bytes on disk{expected} (an interrupted download?); "
            f"{source} sha256 {finding['expected_sha256']}"
        )
    return (
        f"sha256 on disk {finding['actual_sha256']}, {source} {finding['expected_sha256']} "
        "(re-uploaded by its author, or another file under the same name)"
    )


def variants(verify: Mapping[str, Any]) -> dict[tuple[str | None, str], Any]:
    """Return the installed variants of each missing file verify.json names, by its answer key (``answers.key``)."""
    return {key(a["folder"], a["name"]): a["variants"] for a in verify["alternatives"]}


def add_variants(actions: list[dict[str, Any]], verify: Mapping[str, Any]) -> None:
    """Add to each action for a missing file the installed variants of it that verify.json names."""
    found_of = variants(verify)
    for action in actions:
        # Variants exist only for files of a known folder type, so a node type's action never matches one.
        found = found_of.get(key(action["folder"], action["item"])) if action["folder"] is not None else None
        if found:
            action["variants_on_disk"] = found


def drift_actions(verify: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the ``replace_drift`` action of each drifted file verify.json names."""
    made: list[dict[str, Any]] = []
    for finding in verify["drift"]:
        made.append(
            {
                "id": drift_action_id(finding),
                "kind": "replace_drift",
                "item": finding["installed_as"],
                "folder": finding["folder"],
                "url": finding["url"],
                "size": finding["expected_size"],
                "detail": drift_detail(finding),
                "workflows": finding["workflows"],
                "blocks": len(finding["workflows"]),
                "drift": finding,
            }
        )
    return made


def merge_actions(
    actions: list[dict[str, Any]], verify: Mapping[str, Any], with_variants: bool = False
) -> list[dict[str, Any]]:
    """Return ``actions`` with a ``replace_drift`` action per drifted file and the installed variants on
    each action for a missing file (``with_variants``: they have them already, made with ``variants``),
    ranked again: most workflows first, then kind and item."""
    if not with_variants:
        add_variants(actions, verify)
    actions += drift_actions(verify)
    return ranked(actions)
