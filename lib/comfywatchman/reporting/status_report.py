"""Build ``master_status.json`` from the cycle's artifacts: per workflow readiness, what is missing, where to
get it, and the actions ranked by how many workflows each one unblocks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfywatchman.workflow import names

READINESS = ("ready", "resolvable", "needs_review", "blocked", "error")
# What each search status means for a workflow's readiness.
_MODEL_CLASS = {
    "FOUND": "resolvable",
    "NEEDS_ACCESS": "needs_review",
    "UNCERTAIN": "needs_review",
    "NOT_SEARCHED": "needs_review",
    "ERROR": "needs_review",
    "NOT_FOUND": "blocked",
    "INVALID_FILENAME": "blocked",
}
_RANK = {"ready": 0, "resolvable": 1, "needs_review": 2, "blocked": 3}


def _access(result: Mapping[str, Any]) -> tuple[str | None, str]:
    """Return ``(page, what to do)`` for a NEEDS_ACCESS result: the page where access is granted, and the
    instruction naming the token to set (by name, never its value)."""
    access = result.get("details", {}).get("access") or {}
    page, token = access.get("page"), access.get("token", "the service's token")
    why = access.get("why") or result.get("reason", "access needed")
    where = f"get access at {page}" if page else "get access to it"
    return page, f"{why}: {where}, then set {token} to that account's token"


def _key(folder: str | None, name: str) -> tuple[str | None, str]:
    return folder, names.lookup_key(name)


def node_class(node: Mapping[str, Any]) -> str:
    """Return what a missing or disabled node type means for readiness."""
    if node["state"] == "disabled":
        return "resolvable"  # re-enable the pack the user already has
    candidates = [p for p in node["packs"] if not p.get("installed")]
    if len(candidates) == 1:
        return "resolvable"
    # An installed pack that should have it (its note says why not): the user checks that pack.
    return "needs_review" if candidates or installed_notes(node) else "blocked"


def installed_notes(node: Mapping[str, Any]) -> str:
    """Return "pack: note" for each installed pack that should provide a missing node type, or ""."""
    return "; ".join(f"{p['name']}: {p['note']}" for p in node["packs"] if p.get("installed") and p.get("note"))


def workflow_entry(
    scanned: Mapping[str, Any],
    results: Mapping[tuple[str | None, str], Mapping[str, Any]],
    count_inactive: bool,
    history: Mapping[str, Any],
    now_text: str,
) -> dict[str, Any]:
    """Return the report entry for one scanned workflow."""
    entry: dict[str, Any] = {
        "workflow": scanned["workflow"],
        "path": scanned["path"],
        "intake_source": scanned["source"],
        "readiness": "error",
        "missing_models": [],
        "missing_nodes": [],
        "inactive_missing": 0,
        "uncertain_count": 0,
        "newly_missing": [],
        "last_resolved_at": history.get("last_resolved_at"),
        "error": scanned["error"],
    }
    if scanned["error"] is not None:
        return entry
    worst = "ready"
    for model in scanned["models"]:
        if model["status"] == "installed":
            continue
        if not (model["active"] or count_inactive):
            entry["inactive_missing"] += 1
            continue
        result = results.get(_key(model["folder"], model["name"]), {})
        status = "INVALID_FILENAME" if model["status"] == "invalid" else result.get("status", "NOT_SEARCHED")
        first = model["origins"][0] if model["origins"] else None
        entry["missing_models"].append(
            {
                "name": model["name"],
                "folder": model["folder"],
                "status": status,
                "source": result.get("source", "scan"),
                "url": _access(result)[0] if status == "NEEDS_ACCESS" else result.get("url"),
                "evidence": result.get("evidence", "none"),
                "reason": model["invalid_reason"]
                or (_access(result)[1] if status == "NEEDS_ACCESS" else result.get("reason", "")),
                "candidates": result.get("candidates", []),
                "size": result.get("size"),
                "node": f"{first['node_type']} #{first['node_id']}" + (f" `{first['input']}`" if first["input"] else "")
                if first
                else None,
                "looked_in": model["looked_in"],
                "note": model["note"],
            }
        )
        entry["uncertain_count"] += status == "UNCERTAIN"
        worst = max(worst, _MODEL_CLASS[status], key=_RANK.__getitem__)
    for node in scanned["nodes"]:
        if node["state"] not in ("missing", "disabled"):
            continue
        if not (node["active"] or count_inactive):
            entry["inactive_missing"] += 1
            continue
        entry["missing_nodes"].append(
            {
                "class_type": node["class_type"],
                "state": node["state"],
                "packs": node["packs"],
                "node_ids": node["node_ids"],
            }
        )
        worst = max(worst, node_class(node), key=_RANK.__getitem__)
    entry["readiness"] = worst
    if worst in ("ready", "resolvable"):
        entry["last_resolved_at"] = now_text
    previous = set(history.get("missing", []))
    current = [f"model:{m['folder']}:{m['name']}" for m in entry["missing_models"]] + [
        f"node:{n['class_type']}" for n in entry["missing_nodes"]
    ]
    entry["newly_missing"] = [item for item in current if item not in previous] if history else []
    entry["_missing_keys"] = current
    return entry


def actions(workflows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return what the user should do, most unblocking first: downloads, pack installs, reviews, fixes."""
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for wf in workflows:
        for model in wf["missing_models"]:
            kind = {
                "FOUND": "download",
                "NEEDS_ACCESS": "get_access",
                "UNCERTAIN": "review",
                "NOT_FOUND": "find_manually",
                "INVALID_FILENAME": "fix_workflow",
                "ERROR": "retry",
                "NOT_SEARCHED": "search",
            }[model["status"]]
            action = table.setdefault(
                (kind, f"{model['folder']}/{model['name']}"),
                {
                    "kind": kind,
                    "item": model["name"],
                    "folder": model["folder"],
                    "url": model["url"],
                    "size": model["size"],
                    "detail": model["reason"],
                    "workflows": [],
                },
            )
            action["workflows"].append(wf["workflow"])
        for node in wf["missing_nodes"]:
            candidates = [p for p in node["packs"] if not p.get("installed")]
            if node["state"] == "disabled":
                kind, detail = "enable_pack", "re-enable " + ", ".join(p["name"] for p in node["packs"])
            elif len(candidates) == 1:
                kind, detail = "install_pack", candidates[0].get("install", "")
            elif candidates:
                kind, detail = (
                    "choose_pack",
                    f"{len(candidates)} packs claim it: " + ", ".join(p["name"] for p in candidates[:5]),
                )
            elif installed_notes(node):
                kind, detail = "check_pack", installed_notes(node)
            else:
                kind, detail = "find_pack", "no known pack provides it (ComfyUI itself may be outdated)"
            action = table.setdefault(
                (kind, node["class_type"]),
                {
                    "kind": kind,
                    "item": node["class_type"],
                    "folder": None,
                    "url": candidates[0].get("repo") if len(candidates) == 1 else None,
                    "size": None,
                    "detail": detail,
                    "workflows": [],
                },
            )
            action["workflows"].append(wf["workflow"])
        if wf["error"]:
            table[("fix_workflow", wf["path"])] = {
                "kind": "fix_workflow",
                "item": wf["workflow"],
                "folder": None,
                "url": None,
                "size": None,
                "detail": wf["error"],
                "workflows": [wf["workflow"]],
            }
    ranked = sorted(table.values(), key=lambda a: (-len(set(a["workflows"])), a["kind"], a["item"]))
    for action in ranked:
        action["workflows"] = sorted(set(action["workflows"]))
        action["blocks"] = len(action["workflows"])
    return ranked


def build(
    scan: Mapping[str, Any],
    search: Mapping[str, Any] | None,
    history: Mapping[str, Any],
    count_inactive: bool,
    now_text: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Return the workflow entries and the summary for the report, and the new history (in the summary)."""
    results = {_key(r["type"], r["name"]): r for r in (search or {}).get("results", [])}
    workflows = [
        workflow_entry(w, results, count_inactive, history.get(w["path"], {}), now_text) for w in scan["workflows"]
    ]
    summary: dict[str, Any] = {"workflows": len(workflows), **{r: 0 for r in READINESS}}
    for wf in workflows:
        summary[wf["readiness"]] += 1
    missing_models = {_key(m["folder"], m["name"]) for wf in workflows for m in wf["missing_models"]}
    summary["missing_models"] = len(missing_models)
    summary["missing_nodes"] = len({n["class_type"] for wf in workflows for n in wf["missing_nodes"]})
    summary["uncertain"] = sum(1 for r in results.values() if r["status"] == "UNCERTAIN")
    sizes = [r["size"] for k, r in results.items() if r["status"] == "FOUND" and r.get("size") and k in missing_models]
    summary["download_bytes"] = sum(sizes)
    summary["download_sizes_known"] = len(sizes)
    return workflows, summary
