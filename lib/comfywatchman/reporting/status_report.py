"""Build ``master_status.json`` from the cycle's artifacts: per workflow readiness, what is missing, where to
get it, and the actions ranked by how many workflows each one unblocks."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from comfywatchman.reporting import commands
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


def missing_model_entry(model: Mapping[str, Any], result: Mapping[str, Any]) -> dict[str, Any]:
    """Return the report's entry for a missing model file, with what the search answered about it."""
    status = "INVALID_FILENAME" if model["status"] == "invalid" else result.get("status", "NOT_SEARCHED")
    first = model["origins"][0] if model["origins"] else None
    node = None
    if first:
        node = f"{first['node_type']} #{first['node_id']}" + (f" `{first['input']}`" if first["input"] else "")
    return {
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
        "node": node,
        "looked_in": model["looked_in"],
        "note": model["note"],
    }


def missing_node_entry(node: Mapping[str, Any]) -> dict[str, Any]:
    """Return the report's entry for a missing or disabled node type (with its registry id when known)."""
    missing = {
        "class_type": node["class_type"],
        "state": node["state"],
        "packs": node["packs"],
        "node_ids": node["node_ids"],
    }
    pack_id = commands.registry_id(node)  # cnr_id from the workflow's node, when the scan gives one
    if pack_id is not None:
        missing["registry_id"] = pack_id
    return missing


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
        missing = missing_model_entry(model, results.get(_key(model["folder"], model["name"]), {}))
        status = missing["status"]
        entry["missing_models"].append(missing)
        entry["uncertain_count"] += status == "UNCERTAIN"
        worst = max(worst, _MODEL_CLASS[status], key=_RANK.__getitem__)
    for node in scanned["nodes"]:
        if node["state"] not in ("missing", "disabled"):
            continue
        if not (node["active"] or count_inactive):
            entry["inactive_missing"] += 1
            continue
        entry["missing_nodes"].append(missing_node_entry(node))
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


MODEL_ACTION = {
    "FOUND": "download",
    "NEEDS_ACCESS": "get_access",
    "UNCERTAIN": "review",
    "NOT_FOUND": "find_manually",
    "INVALID_FILENAME": "fix_workflow",
    "ERROR": "retry",
    "NOT_SEARCHED": "search",
}


def _new_action(kind: str, item: str, **fields: Any) -> dict[str, Any]:
    """Return an action record with every field master_status.json requires (``fields`` override)."""
    action: dict[str, Any] = {
        "kind": kind,
        "item": item,
        "folder": None,
        "url": None,
        "size": None,
        "detail": "",
        "note": "",
        "target_path": None,
        "token": None,
        "registry_id": None,
        "node_types": [],
        "candidates": [],
        "commands": [],
        "alternatives": [],
        "workflows": set(),
    }
    action.update(fields)
    return action


def _with_ways(action: dict[str, Any], ways: list[list[dict[str, Any]]]) -> dict[str, Any]:
    action["commands"], action["alternatives"] = (ways[0], ways[1:]) if ways else ([], [])
    return action


def _model_action(model: Mapping[str, Any], facts: commands.InstallFacts, gated: bool) -> dict[str, Any]:
    """Return the action for one missing model file, with its commands (download) or when it is searched."""
    kind = MODEL_ACTION[model["status"]]
    action = _new_action(
        kind,
        model["name"],
        folder=model["folder"],
        url=model["url"],
        size=model["size"],
        detail=model["reason"],
        note=model["note"],
    )
    if kind == "download" and model["url"]:
        target = facts.targets.get(_key(model["folder"], model["name"]))
        if target is None and model["folder"] and not names.invalid_reason(model["name"]):
            # The install has no such folder yet: ComfyUI's own place for the type is models/<type>.
            target = posixpath.join(facts.root, "models", model["folder"], names.normalize(model["name"]))
        action["token"] = commands.token_for(model["url"], gated)
        if target is not None:
            action["target_path"] = target
            # The preferred way and one other (curl after hf, comfy-cli after curl): thousands of downloads
            # each carrying every way would weigh on master_status.json.
            ways = commands.download_commands(model["url"], target, action["token"], facts.root)
            _with_ways(action, ways[:2])
    elif kind == "review":
        action["candidates"] = [
            {k: c.get(k) for k in ("name", "source", "url", "reason", "size")} for c in model["candidates"][:5]
        ]
    return action


def _node_key(node: Mapping[str, Any]) -> tuple[str, str]:
    """Return the action key of a missing or disabled node type: packs are keyed by pack, so one install or
    re-enable that provides several node types is one action."""
    if node["state"] == "disabled":
        return "enable_pack", ", ".join(p["name"] for p in node["packs"])
    candidates = [p for p in node["packs"] if not p.get("installed")]
    if len(candidates) == 1:
        return "install_pack", candidates[0].get("repo") or candidates[0]["name"]
    if candidates:
        return "choose_pack", node["class_type"]
    # An installed pack should provide it but does not show it: never "install" what is installed.
    return ("check_pack" if installed_notes(node) else "find_pack"), node["class_type"]


def _node_action(kind: str, node: Mapping[str, Any], facts: commands.InstallFacts) -> dict[str, Any]:
    """Return the action of kind ``kind`` (from :func:`_node_key`) for one missing or disabled node type."""
    candidates = [p for p in node["packs"] if not p.get("installed")]
    if kind == "enable_pack":
        return _enable_action([p["name"] for p in node["packs"]], facts)
    if kind == "install_pack":
        pack = candidates[0]
        pack_id = commands.registry_id(node, pack)
        action = _new_action(kind, pack["name"], url=pack.get("repo"), detail=pack.get("install", ""))
        action["registry_id"] = pack_id
        return _with_ways(action, commands.install_commands(pack, facts, pack_id))
    if kind == "choose_pack":
        return _choose_action(node, candidates, facts)
    if kind == "check_pack":
        return _new_action(kind, node["class_type"], detail=installed_notes(node))
    detail = "; ".join(p["note"] for p in node["packs"] if p.get("note")) or (
        "no known pack provides it (ComfyUI itself may be outdated)"
    )
    return _new_action(kind, node["class_type"], detail=detail)


def _enable_action(packs: list[str], facts: commands.InstallFacts) -> dict[str, Any]:
    """Return the action that re-enables the disabled ``packs`` (one step each, in one preferred way)."""
    ways = [commands.enable_commands(name, facts) for name in packs]
    action = _new_action("enable_pack", ", ".join(packs), detail="re-enable " + ", ".join(packs))
    return _with_ways(action, [[s for w in ways for s in w[0]], *(alt for w in ways for alt in w[1:])])


def _choose_action(
    node: Mapping[str, Any], candidates: list[Mapping[str, Any]], facts: commands.InstallFacts
) -> dict[str, Any]:
    """Return the action for a node type several packs claim; the node's registry id, when it has one, settles
    the choice and gives the command."""
    detail = f"{len(candidates)} packs claim it: " + ", ".join(p["name"] for p in candidates[:5])
    action = _new_action("choose_pack", node["class_type"], detail=detail, registry_id=commands.registry_id(node))
    if action["registry_id"]:
        argv = ["comfy", "--workspace", facts.root, "node", "install", action["registry_id"]]
        action["commands"] = [commands.step("comfy", argv, "the pack the workflow's node names")]
    action["candidates"] = [
        {"name": p["name"], "source": "node map", "url": p.get("repo"), "reason": "", "size": None}
        for p in candidates[:5]
    ]
    return action


def actions(
    workflows: list[dict[str, Any]],
    facts: commands.InstallFacts | None = None,
    gated: frozenset[tuple[str | None, str]] = frozenset(),
) -> list[dict[str, Any]]:
    """Return what the user should do, most unblocking first: downloads, pack installs and re-enables (one per
    pack), reviews, fixes, searches; each with the commands to run and the workflows it unblocks.

    ``facts`` gives the install's paths for the commands (None: the bare ComfyUI root of nothing known);
    ``gated`` the (folder, lookup key) of files whose download needs a Hugging Face token.
    """
    facts = facts or commands.InstallFacts(root=".")
    table: dict[tuple[str, str], dict[str, Any]] = {}
    for wf in workflows:
        for model in wf["missing_models"]:
            key = (MODEL_ACTION[model["status"]], f"{model['folder']}/{model['name']}")
            action = table.get(key)
            if action is None:
                action = table[key] = _model_action(model, facts, _key(model["folder"], model["name"]) in gated)
            action["workflows"].add(wf["workflow"])
        for node in wf["missing_nodes"]:
            key = _node_key(node)
            action = table.get(key)
            if action is None:
                action = table[key] = _node_action(key[0], node, facts)
            if node["class_type"] not in action["node_types"]:
                action["node_types"].append(node["class_type"])
            action["workflows"].add(wf["workflow"])
        if wf["error"]:
            table[("fix_workflow", wf["path"])] = _new_action(
                "fix_workflow", wf["workflow"], detail=wf["error"], workflows={wf["workflow"]}
            )
    ranked = [_finished(action) for action in table.values()]
    return sorted(ranked, key=lambda a: (-a["blocks"], a["kind"], a["item"]))


# Fields every action has; the others are left out when empty (a search needs no command, a download no node
# types), which keeps master_status.json near its old size at thousands of actions.
ALWAYS = frozenset({"kind", "item", "folder", "url", "size", "detail", "workflows", "blocks"})


def _finished(action: dict[str, Any]) -> dict[str, Any]:
    """Return ``action`` with its workflows sorted and counted and its empty optional fields dropped."""
    action["workflows"] = sorted(action["workflows"])
    action["blocks"] = len(action["workflows"])
    action["node_types"].sort()
    return {k: v for k, v in action.items() if k in ALWAYS or v not in (None, "", [])}


def action_totals(ranked: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Return, per action kind: how many actions, how many workflows they concern together, and the total
    known size (with how many sizes are known)."""
    totals: dict[str, dict[str, int]] = {}
    concerned: dict[str, set[str]] = {}
    for action in ranked:
        kind = action["kind"]
        entry = totals.setdefault(kind, {"actions": 0, "workflows": 0, "bytes": 0, "sizes_known": 0})
        entry["actions"] += 1
        concerned.setdefault(kind, set()).update(action["workflows"])
        if action["size"]:
            entry["bytes"] += action["size"]
            entry["sizes_known"] += 1
    for kind, entry in totals.items():
        entry["workflows"] = len(concerned[kind])
    return totals


def gated_files(search: Mapping[str, Any] | None) -> frozenset[tuple[str | None, str]]:
    """Return the (folder, lookup key) of FOUND files whose source says a token is needed (gated)."""
    found = set()
    for result in (search or {}).get("results", []):
        details = result.get("details") or {}
        if details.get("gated") or (details.get("huggingface") or {}).get("gated"):
            found.add(_key(result["type"], result["name"]))
    return frozenset(found)


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
