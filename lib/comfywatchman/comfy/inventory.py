"""The installed side of the comparison: indexes over the model and custom-node caches.

Model references are matched against an index of the files that were scanned, never by joining a workflow's
string onto a folder path, so a name cannot reach outside the model folders.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from comfywatchman import resources
from comfywatchman.comfy.manager_map import NodeMap, PackCandidate
from comfywatchman.workflow import names

# Node types the frontend draws that never exist on the server.
FRONTEND_ONLY = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})


@cache
def core_node_types() -> frozenset[str]:
    """Return the node types ComfyUI itself provides (``data/core_nodes.txt``)."""
    text = (resources.DATA_DIR / "core_nodes.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class ModelMatch:
    """The outcome of looking one reference up: installed or not, and what was close."""

    installed: bool
    installed_as: str | None
    looked_in: list[str]
    note: str = ""


@dataclass
class ModelIndex:
    """Folder type -> exact and case-folded keys of every installed model file."""

    paths: dict[str, list[str]] = field(default_factory=dict)
    exact: dict[str, dict[str, str]] = field(default_factory=dict)
    folded: dict[str, dict[str, str]] = field(default_factory=dict)
    by_basename: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    case_insensitive: bool = sys.platform in ("win32", "darwin")

    @classmethod
    def from_cache(cls, model_cache: Mapping[str, Any], case_insensitive: bool | None = None) -> ModelIndex:
        """Return the index over a model_cache.json document."""
        index = cls()
        if case_insensitive is not None:
            index.case_insensitive = case_insensitive
        for folder, group in model_cache["folders"].items():
            index.paths[folder] = list(group["paths"])
            exact = index.exact.setdefault(folder, {})
            folded = index.folded.setdefault(folder, {})
            base = index.by_basename.setdefault(folder, {})
            for entry in group["files"]:
                name = entry["name"]
                norm = names.normalize(name)
                exact.setdefault(norm, name)
                folded.setdefault(norm.casefold(), name)
                base.setdefault(names.basename(norm).casefold(), []).append(name)
        return index

    def find(self, name: str, folder: str | None) -> ModelMatch:
        """Return whether ``name`` (as a workflow writes it) is installed in ``folder`` (None: any folder)."""
        folders = [folder] if folder is not None else sorted(self.exact)
        looked_in = [p for f in folders for p in self.paths.get(f, [])]
        norm = names.normalize(name)
        for f in folders:
            if norm in self.exact.get(f, {}):
                return ModelMatch(True, self.exact[f][norm], looked_in)
        for f in folders:
            hit = self.folded.get(f, {}).get(norm.casefold())
            if hit is not None:
                if self.case_insensitive:
                    return ModelMatch(True, hit, looked_in)
                return ModelMatch(False, hit, looked_in, f"installed as {hit!r}: the letter case differs")
        base = names.basename(norm).casefold()
        for f in folders:
            hits = self.by_basename.get(f, {}).get(base, [])
            if len(hits) == 1:
                return ModelMatch(False, hits[0], looked_in, f"installed as {hits[0]!r} in another subfolder")
            if len(hits) > 1:
                return ModelMatch(False, None, looked_in, f"{len(hits)} files of that name in other subfolders")
        if folder is not None and folder not in self.paths:
            return ModelMatch(False, None, looked_in, f"no {folder!r} folder in this install")
        return ModelMatch(False, None, looked_in)


@dataclass(frozen=True)
class NodeState:
    """Whether a node type is available, and from where."""

    state: str  # core | frontend | installed | disabled | missing
    packs: list[dict[str, Any]]


@dataclass
class NodeIndex:
    """Node type -> where it comes from: core, the frontend, an installed or a disabled pack."""

    enabled: dict[str, list[str]] = field(default_factory=dict)
    disabled: dict[str, list[str]] = field(default_factory=dict)
    core: frozenset[str] = frozenset()
    node_map: NodeMap = field(default_factory=lambda: NodeMap(source=None))

    @classmethod
    def from_cache(cls, nodes_cache: Mapping[str, Any], node_map: NodeMap, core: frozenset[str] | None = None) -> NodeIndex:
        """Return the index over a custom_nodes_cache.json document and ComfyUI-Manager's map."""
        index = cls(core=core_node_types() if core is None else core, node_map=node_map)
        for pack in nodes_cache["packs"]:
            target = index.enabled if pack["enabled"] else index.disabled
            for node_type in pack["node_types"]:
                target.setdefault(node_type, []).append(pack["name"])
        return index

    def state(self, class_type: str) -> NodeState:
        """Return where ``class_type`` comes from, with candidate packs when it is missing."""
        if class_type in self.enabled:
            return NodeState("installed", [{"name": n, "installed": True} for n in self.enabled[class_type]])
        if class_type in self.core:
            return NodeState("core", [])
        if class_type in FRONTEND_ONLY:
            return NodeState("frontend", [])
        if class_type in self.disabled:
            return NodeState("disabled", [{"name": n, "installed": False, "disabled": True} for n in self.disabled[class_type]])
        return NodeState("missing", [_candidate_json(c) for c in self.node_map.candidates(class_type)])


def _candidate_json(candidate: PackCandidate) -> dict[str, Any]:
    return {"name": candidate.title, "installed": False, **candidate.to_json()}
