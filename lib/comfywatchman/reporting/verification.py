"""The verify stage's findings in the master status report: drift and alternatives already on disk.

Kept apart from ``status_report`` so the report's layout can change without touching them: ``apply`` adds
the findings to the workflow entries (drift makes a workflow ``needs_review``), ``merge_actions`` adds a
``replace_drift`` action per drifted file and the installed variants next to each download, then ranks every
action again by the workflows it touches.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.workflow import names

logger = logging.getLogger(__name__)

ARTIFACT = "verify.json"
_RANK = {"ready": 0, "resolvable": 1, "needs_review": 2, "blocked": 3, "error": 4}


def load(state_dir: Path) -> dict[str, Any] | None:
    """Return ``verify.json``, or None when the verify stage has not written one (or it is unreadable, with
    a warning naming the file)."""
    try:
        document: dict[str, Any] | None = artifacts.read_optional(state_dir / ARTIFACT, "verify")
    except ArtifactError as exc:
        logger.warning("%s; the report has no drift findings", exc)
        return None
    return document


def _key(folder: str | None, name: str) -> tuple[str | None, str]:
    return folder, names.lookup_key(name)


def apply(
    workflows: list[dict[str, Any]],
    summary: dict[str, Any],
    verify: Mapping[str, Any],
    history: Mapping[str, Any],
) -> dict[str, Any]:
    """Add drift (``drift``) and installed variants (``variants_on_disk`` on each missing model) to the report's
    workflow entries; a workflow with drift is at least ``needs_review`` (and was not resolved this cycle).
    Update the readiness counts of ``summary``; return the report's ``verification`` block."""
    drift_by_workflow: dict[str, list[dict[str, Any]]] = {}
    for finding in verify["drift"]:
        for name in finding["workflows"]:
            drift_by_workflow.setdefault(name, []).append(finding)
    variants = {_key(a["folder"], a["name"]): a["variants"] for a in verify["alternatives"]}
    for wf in workflows:
        for model in wf["missing_models"]:
            found = variants.get(_key(model["folder"], model["name"]))
            if found:
                model["variants_on_disk"] = found
        drifted = drift_by_workflow.get(wf["workflow"])
        if not drifted or wf["error"] is not None:
            continue
        wf["drift"] = drifted
        if _RANK[wf["readiness"]] < _RANK["needs_review"]:
            summary[wf["readiness"]] -= 1
            summary["needs_review"] += 1
            wf["readiness"] = "needs_review"
            wf["last_resolved_at"] = history.get(wf["path"], {}).get("last_resolved_at")
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


def merge_actions(actions: list[dict[str, Any]], verify: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return ``actions`` with a ``replace_drift`` action per drifted file and the installed variants on
    each action for a missing file, ranked again: most workflows first, then kind and item."""
    variants = {_key(a["folder"], a["name"]): a["variants"] for a in verify["alternatives"]}
    for action in actions:
        # Variants exist only for files of a known folder type, so a node type's action never matches one.
        found = variants.get(_key(action["folder"], action["item"])) if action["folder"] is not None else None
        if found:
            action["variants_on_disk"] = found
    for finding in verify["drift"]:
        actions.append(
            {
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
    return sorted(actions, key=lambda a: (-a["blocks"], a["kind"], a["item"]))
