"""Build master_status.json's findings: per workflow readiness and what it misses, and the actions ranked by
how many workflows each one unblocks, with the commands to run.

Everything about one file or pack (where to get it, its size, the search's answer, where it was looked for,
the installed variants) is said once, in its action; a workflow's entry names what it misses and refers to
the action by ``id`` (``KIND:KEY``). The report is built one workflow at a time: ``workflow_record`` makes a
workflow's record from its scan.json entry and the answers it depends on, and ``Aggregate`` gathers the
records keeping only what the whole needs (one seed and the workflows per action, the counts, one short row
per workflow for the page, the readiness history). A record is plain JSON, so an unchanged workflow's record
is kept from one cycle to the next (``parts``).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from comfywatchman.reporting import commands, markdown
from comfywatchman.reporting.action_ids import action_id, ranked
from comfywatchman.reporting.answers import NO_ANSWER, Answers, Key, key, lookup
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
_RANK = {"ready": 0, "resolvable": 1, "needs_review": 2, "blocked": 3, "error": 4}
_BY_RANK = {rank: readiness for readiness, rank in _RANK.items()}
# The fields of a missing file's scan entry its action needs (the rest is the search's answer).
MODEL_SEED = ("name", "folder", "note", "looked_in", "invalid_reason")


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


MODEL_ACTION = {
    "FOUND": "download",
    "NEEDS_ACCESS": "get_access",
    "UNCERTAIN": "review",
    "NOT_FOUND": "find_manually",
    "INVALID_FILENAME": "fix_workflow",
    "ERROR": "retry",
    "NOT_SEARCHED": "search",
}


def model_action_id(status: str, folder: str | None, name: str) -> str:
    """Return the id of the action for a missing file whose search status is ``status``."""
    return action_id(MODEL_ACTION[status], f"{folder or ''}/{name}")


def node_action_id(node: Mapping[str, Any]) -> str:
    """Return the id of the action for a missing or disabled node type."""
    return action_id(*_node_key(node))


def missing_node_entry(node: Mapping[str, Any], aid: str) -> dict[str, Any]:
    """Return a workflow entry's item for a missing or disabled node type: what it is, where, its registry id
    when the workflow's node names one, and the action that provides it."""
    missing = {"class_type": node["class_type"], "state": node["state"], "node_ids": node["node_ids"], "action": aid}
    pack_id = commands.registry_id(node)  # cnr_id from the workflow's node, when the scan gives one
    if pack_id is not None:
        missing["registry_id"] = pack_id
    return missing


def _first_node(model: Mapping[str, Any]) -> str | None:
    """Return the first node naming a file, as 'Type #id `input`'."""
    first = model["origins"][0] if model["origins"] else None
    if not first:
        return None
    return f"{first['node_type']} #{first['node_id']}" + (f" `{first['input']}`" if first["input"] else "")


def _counted(item: Mapping[str, Any], count_inactive: bool) -> bool:
    return bool(item["active"] or count_inactive)


# What a node type's action is made of (``_node_action``), from its first missing node type.
_NODE_SEED = ("class_type", "state", "packs", "registry_id", "cnr_id")
#: What ``scanned_part`` is: bump it when it changes (or ``workflow_record`` reads more of an entry).
PARTS_TAG = "report-scan-parts-1"
_MISSING_NODE = ("missing", "disabled")


def scanned_part(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Return what ``workflow_record`` reads of a scan.json workflow entry, as an entry it takes the same way:
    its names and error, each model not installed (without what is not read: its declarations, how it was
    checked, every origin but the first's node) and each node type missing or disabled, whole. The scan takes
    it of each entry it makes (``scan_parts.Primer``), so the report need not read those lines back."""
    models: list[dict[str, Any]] = []
    add = models.append
    # A plain loop (no comprehension per model for its first origin): ~9,000 models at 2,000 workflows.
    for model in entry["models"]:
        if model["status"] == "installed":
            continue
        origins = model["origins"]
        if origins:
            first = origins[0]
            origins = [{"input": first["input"], "node_id": first["node_id"], "node_type": first["node_type"]}]
        add(
            {
                "active": model["active"],
                "folder": model["folder"],
                "invalid_reason": model["invalid_reason"],
                "looked_in": model["looked_in"],
                "name": model["name"],
                "note": model["note"],
                "origins": origins,
                "status": model["status"],
            }
        )
    return {
        "error": entry["error"],
        "models": models,
        "nodes": [node for node in entry["nodes"] if node["state"] in _MISSING_NODE],
        "path": entry["path"],
        "source": entry["source"],
        "workflow": entry["workflow"],
    }


def workflow_record(
    scanned: Mapping[str, Any],
    answers: Answers,
    count_inactive: bool,
    history: Mapping[str, Any],
    drift_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Return the record of one scanned workflow: ``entry`` (its master_status.json entry, ``last_resolved_at``
    left to ``emit`` when it is resolved now), ``files`` (per missing file, in the entry's order, the scan's
    facts its action needs: ``MODEL_SEED`` after name and folder), ``seeds`` (action id -> what makes the
    action of a node type or an unreadable workflow), ``resolved``, and for an unreadable workflow ``missing``
    (what it missed before). What it misses and the answers it depends on follow from the entry
    (``missing_of``, ``keys_of``): a record is kept small, it is kept for every workflow. ``history`` is the
    workflow's history entry; ``drift_ids`` the replace_drift actions of the installed files it needs that
    drifted."""
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
    record: dict[str, Any] = {"entry": entry, "files": [], "seeds": {}, "resolved": False}
    if scanned["error"] is not None:
        # An unreadable workflow keeps what it missed before.
        record["missing"] = list(history.get("missing", []))
        seed = {"error": scanned["error"], "workflow": scanned["workflow"]}
        record["seeds"][action_id("fix_workflow", scanned["path"])] = seed
        return record
    worst = _missing_models(scanned["models"], answers, count_inactive, record)
    seeds = record["seeds"]
    for node in scanned["nodes"]:
        if node["state"] not in _MISSING_NODE:
            continue
        if not _counted(node, count_inactive):
            entry["inactive_missing"] += 1
            continue
        aid = node_action_id(node)
        entry["missing_nodes"].append(missing_node_entry(node, aid))
        if aid not in seeds:  # the first node type of an action seeds it
            seeds[aid] = {"node": {k: node[k] for k in _NODE_SEED if k in node}}
        worst = max(worst, _RANK[node_class(node)])
    if drift_ids:
        # An installed file that is not the one declared: at least a review, and not resolved this cycle.
        entry["drift"] = list(drift_ids)
        worst = max(worst, _RANK["needs_review"])
    entry["readiness"] = _BY_RANK[worst]
    record["resolved"] = worst <= _RANK["resolvable"]
    previous = set(history.get("missing", []))
    entry["newly_missing"] = [item for item in missing_of(record) if item not in previous] if history else []
    return record


# What each search status means for a workflow's readiness, as its place in READINESS (``_RANK``).
_MODEL_RANK = {status: _RANK[readiness] for status, readiness in _MODEL_CLASS.items()}


def _missing_models(
    models: Sequence[Mapping[str, Any]], answers: Answers, count_inactive: bool, record: dict[str, Any]
) -> int:
    """Add to ``record`` (``workflow_record``'s) the scan's ``models`` the workflow misses, each with its
    answer's status and action, and its facts (``files``); return the worst readiness they make, as its place
    in READINESS. Written for speed: a large install misses tens of thousands of files, each seen here."""
    entry = record["entry"]
    add, add_files = entry["missing_models"].append, record["files"].append
    answer_of = answers.results.get
    worst = inactive = uncertain = 0
    for model in models:
        status = model["status"]
        if status == "installed":
            continue
        if not (model["active"] or count_inactive):
            inactive += 1
            continue
        folder, name = model["folder"], model["name"]
        if status == "invalid":
            status = "INVALID_FILENAME"
        else:
            status = (answer_of((folder, lookup(name))) or NO_ANSWER)["status"]
            if status == "UNCERTAIN":
                uncertain += 1
        add(
            {
                "name": name,
                "folder": folder,
                "status": status,
                "node": _first_node(model),
                "action": f"{MODEL_ACTION[status]}:{folder or ''}/{name}",  # ``model_action_id``
            }
        )
        add_files([model["note"], model["looked_in"], model["invalid_reason"]])  # ``MODEL_SEED[2:]``
        if _MODEL_RANK[status] > worst:
            worst = _MODEL_RANK[status]
    entry["inactive_missing"] += inactive
    entry["uncertain_count"] += uncertain
    return worst


def missing_of(record: Mapping[str, Any]) -> list[str]:
    """Return what the record's workflow misses, as the readiness history keeps it (``model:FOLDER:NAME``,
    ``node:TYPE``); for an unreadable workflow, what it missed before."""
    entry = record["entry"]
    if entry["error"] is not None:
        return list(record["missing"])
    return [f"model:{m['folder']}:{m['name']}" for m in entry["missing_models"]] + [
        f"node:{n['class_type']}" for n in entry["missing_nodes"]
    ]


def keys_of(record: Mapping[str, Any]) -> list[Key]:
    """Return the keys of the answers the record was made with (one per missing file)."""
    return [key(m["folder"], m["name"]) for m in record["entry"]["missing_models"]]


def history_holds(record: Mapping[str, Any], history: Mapping[str, Any]) -> bool:
    """Return True when ``record`` says what ``workflow_record`` would say with the history entry ``history``:
    the same things newly missing, the same last resolved time (when it is not resolved now), and for an
    unreadable workflow the same things missed before. A record is kept while this holds, whatever else the
    history says (it changes in the cycle after each report)."""
    entry = record["entry"]
    if entry["error"] is not None:
        return bool(record["missing"] == list(history.get("missing", [])))
    if not record["resolved"] and entry["last_resolved_at"] != history.get("last_resolved_at"):
        return False
    previous = set(history.get("missing", []))
    newly = [item for item in missing_of(record) if item not in previous] if history else []
    return bool(newly == entry["newly_missing"])


def emit(record: Mapping[str, Any], now_text: str) -> dict[str, Any]:
    """Return the record's master_status.json entry for a report written at ``now_text`` (a workflow resolved
    now was last resolved now)."""
    entry: dict[str, Any] = record["entry"]
    if record["resolved"]:
        entry["last_resolved_at"] = now_text
    return entry


def _new_action(kind: str, item: str, **fields: Any) -> dict[str, Any]:
    """Return an action record with every field master_status.json requires (``fields`` override)."""
    action: dict[str, Any] = {
        "id": "",
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


def _model_action(
    seed: Mapping[str, Any],
    status: str,
    answer: Mapping[str, Any],
    facts: commands.InstallFacts,
    gated: bool,
    found: Key,
) -> dict[str, Any]:
    """Return the action for one missing model file, made of its scan facts (``seed``: ``MODEL_SEED``), its
    search status and the search's answer, with its commands (download) or when it is searched; its
    optional fields only when they say something (``ALWAYS``). Made directly in that form (no dict of the
    file's facts between): a large install has tens of thousands of them. ``gated``: whether its download
    needs a token; ``found``: its answer key (``answers.key``)."""
    kind = MODEL_ACTION[status]
    name, folder, url = seed["name"], seed["folder"], answer["url"]
    action = {
        "kind": kind,
        "item": name,
        "folder": folder,
        "url": url,
        "size": answer["size"],
        "detail": seed["invalid_reason"] or answer["reason"],
    }
    if seed["note"]:
        action["note"] = seed["note"]
    if answer["source"]:
        action["source"] = answer["source"]
    if answer["evidence"]:
        action["evidence"] = answer["evidence"]
    if kind == "download" and url:
        target = facts.targets.get(found)
        if target is None and folder and not names.invalid_reason(name):
            # The install has no such folder yet: ComfyUI's own place for the type is models/<type>.
            target = posixpath.join(facts.root, "models", folder, names.normalize(name))
        token = commands.token_for(url, gated)
        if token is not None:
            action["token"] = token
        if target is not None:
            action["target_path"] = target
            # The preferred way and one other (curl after hf, comfy-cli after curl): thousands of downloads
            # each carrying every way would weigh on master_status.json.
            ways = commands.download_commands(url, target, token, facts.root, limit=2)
            if ways:
                action["commands"] = ways[0]
            if ways[1:2]:
                action["alternatives"] = ways[1:2]
    elif kind == "review" and answer["candidates"]:
        action["candidates"] = [dict(c) for c in answer["candidates"]]
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


# Fields every action has; the others are left out when empty (a search needs no command, a download no node
# types), which keeps master_status.json near its old size at thousands of actions.
ALWAYS = frozenset({"id", "kind", "item", "folder", "url", "size", "detail", "workflows", "blocks"})


def _finished(action: dict[str, Any]) -> dict[str, Any]:
    """Return ``action`` with its workflows sorted and counted and its empty optional fields dropped."""
    action["workflows"] = sorted(action["workflows"])
    action["blocks"] = len(action["workflows"])
    action["node_types"].sort()
    return {k: v for k, v in action.items() if k in ALWAYS or v not in (None, "", [])}


class _Pending:
    """One action while the records are gathered: what makes it, and the workflows (and node types) it is for."""

    # A plain class, not a dataclass: making a dataclass costs every cycle's process ~0.2 ms (Python 3.11).
    __slots__ = ("node_types", "seed", "workflows")

    seed: Mapping[str, Any]
    # Lists, not sets (tens of thousands of actions, most for one or two workflows); deduplicated at the end.
    workflows: list[str]
    node_types: list[str]

    def __init__(
        self, seed: Mapping[str, Any], workflows: list[str] | None = None, node_types: list[str] | None = None
    ) -> None:
        self.seed = seed
        self.workflows = [] if workflows is None else workflows
        self.node_types = [] if node_types is None else node_types


class Aggregate:
    """The report of many workflows, gathered one record at a time: counts, the action index, the page's rows
    and the readiness history; no workflow entry is kept."""

    def __init__(self, answers: Answers) -> None:
        self.answers = answers
        self.counts = {"workflows": 0, **{r: 0 for r in READINESS}}
        self.missing_models: set[Key] = set()
        self.missing_nodes: set[str] = set()
        self.pending: dict[str, _Pending] = {}
        self.rows: list[markdown.Row] = []
        self.history: dict[str, dict[str, Any]] = {}
        self.has_disabled = False
        self.has_downloads = False
        self.model_dirs: dict[str, list[str]] = {}
        # report_history.json's text when it was made of kept entries (``kept_whole.history_text``), not ``history``.
        self.history_text: bytes | None = None

    def add(self, record: Mapping[str, Any], now_text: str) -> dict[str, Any]:
        """Count ``record``, index its actions, and return its master_status.json entry (``emit``)."""
        entry = emit(record, now_text)
        name = entry["workflow"]
        self.counts["workflows"] += 1
        self.counts[entry["readiness"]] += 1
        # Names bound once: a large install misses tens of thousands of files, each seen here.
        pending_of, missing_models, model_dirs = self.pending, self.missing_models, self.model_dirs
        for missing, (note, looked_in, invalid_reason) in zip(entry["missing_models"], record["files"], strict=True):
            folder, file_name = missing["folder"], missing["name"]
            missing_models.add((folder, lookup(file_name)))  # ``key``
            pending = pending_of.get(missing["action"])
            if pending is None:
                # Where a file was looked for depends on its folder type alone: said once per type.
                if (folder or "") not in model_dirs:
                    model_dirs[folder or ""] = looked_in
                status = missing["status"]
                model = {"name": file_name, "folder": folder, "note": note, "invalid_reason": invalid_reason}
                # Its lists given (no factory called): most of ten thousand actions are made here.
                pending_of[missing["action"]] = _Pending({"model": model, "status": status}, [name], [])
                if status == "FOUND":
                    self.has_downloads = True
            else:
                pending.workflows.append(name)
        for aid, seed in record["seeds"].items():
            pending = pending_of.get(aid)
            if pending is None:
                pending_of[aid] = _Pending(seed, [name], [])
            else:
                pending.workflows.append(name)
        for node in entry["missing_nodes"]:
            self.missing_nodes.add(node["class_type"])
            self.has_disabled = self.has_disabled or node["state"] == "disabled"
            self.pending[node["action"]].node_types.append(node["class_type"])
        self.rows.append(markdown.row(entry))
        self.history[entry["path"]] = {"last_resolved_at": entry["last_resolved_at"], "missing": missing_of(record)}
        return entry

    def summary(self) -> dict[str, Any]:
        """Return the report's headline counts."""
        # The files missed whose answer is FOUND with a size, through those answers (few) rather than every file.
        missing = self.missing_models
        sizes = [size for found, size in self.answers.sized().items() if found in missing]
        return {
            **self.counts,
            "missing_models": len(self.missing_models),
            "missing_nodes": len(self.missing_nodes),
            "uncertain": self.answers.uncertain,
            "download_bytes": sum(sizes),
            "download_sizes_known": len(sizes),
        }

    def actions(
        self,
        facts: commands.InstallFacts | None = None,
        rank: bool = True,
        variants: Mapping[Key, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Return what the user should do, most unblocking first: downloads, pack installs and re-enables (one
        per pack), reviews, fixes, searches; each with the commands to run and the workflows it unblocks.
        ``facts`` gives the install's paths for the commands (None: the bare ComfyUI root of nothing known);
        ``rank`` False leaves them in the order they were first needed (the caller ranks them with others);
        ``variants``: as ``action`` takes them."""
        facts = facts or commands.InstallFacts(root=".")
        made = [self.action(aid, facts, variants) for aid in self.pending]
        return ranked(made) if rank else made

    def action(
        self, aid: str, facts: commands.InstallFacts, variants: Mapping[Key, Any] | None = None
    ) -> dict[str, Any]:
        """Return the action ``aid`` of the gathered records (``actions`` makes each one this way); ``variants``:
        the installed variants of missing files by answer key (``verification.variants``), which an action
        for one of them names (``variants_on_disk``)."""
        pending = self.pending[aid]
        seed = pending.seed
        if "model" in seed:
            action = self._file_action(seed, facts, variants)
            workflows = pending.workflows
            # Most files are missed by one workflow: nothing to sort or make unique.
            action["workflows"] = [workflows[0]] if len(workflows) == 1 else sorted(set(workflows))
            action["blocks"] = len(action["workflows"])
        else:
            action = self._action(seed, aid, facts)
            action["workflows"] = set(pending.workflows)
            action["node_types"] = sorted(set(pending.node_types))
            action = _finished(action)
        action["id"] = aid
        return action

    def _file_action(
        self, seed: Mapping[str, Any], facts: commands.InstallFacts, variants: Mapping[Key, Any] | None
    ) -> dict[str, Any]:
        model = seed["model"]
        found = (model["folder"], lookup(model["name"]))  # ``key``, without a call per file
        answer = self.answers.results.get(found) or NO_ANSWER
        action = _model_action(model, seed["status"], answer, facts, found in self.answers.gated, found)
        on_disk = variants.get(found) if variants and model["folder"] is not None else None
        if on_disk:
            action["variants_on_disk"] = on_disk
        return action

    def _action(self, seed: Mapping[str, Any], aid: str, facts: commands.InstallFacts) -> dict[str, Any]:
        if "node" in seed:
            return _node_action(aid.split(":", 1)[0], seed["node"], facts)
        return _new_action("fix_workflow", seed["workflow"], detail=seed["error"])


def action_totals(ranked: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Return, per action kind: how many actions, how many workflows they concern together, and the total
    known size (with how many sizes are known)."""
    # The actions of each kind first (kinds in the order first met), then each kind's sums in one go: ten
    # thousand actions at 2,000 workflows.
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for action in ranked:
        members = by_kind.get(action["kind"])
        if members is None:
            members = by_kind[action["kind"]] = []
        members.append(action)
    totals: dict[str, dict[str, int]] = {}
    for kind, members in by_kind.items():
        sizes = [size for action in members if (size := action["size"])]
        concerned: set[str] = set().union(*[action["workflows"] for action in members])
        totals[kind] = {"actions": len(members), "workflows": len(concerned), "bytes": sum(sizes)}
        totals[kind]["sizes_known"] = len(sizes)
    return totals


def build(
    scanned: Iterable[Mapping[str, Any]],
    answers: Answers,
    history: Mapping[str, Any],
    count_inactive: bool,
    now_text: str,
    drift: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[dict[str, Any]], Aggregate]:
    """Return the entries of the scanned workflows ``scanned`` and their Aggregate, all in memory (for a few
    workflows; the report stage streams them). ``history``: path -> history entry; ``drift``: workflow name ->
    its replace_drift action ids."""
    aggregate = Aggregate(answers)
    entries = []
    for scan_entry in scanned:
        drift_ids = (drift or {}).get(scan_entry["workflow"], ())
        record = workflow_record(scan_entry, answers, count_inactive, history.get(scan_entry["path"], {}), drift_ids)
        entries.append(aggregate.add(record, now_text))
    return entries, aggregate
