"""What a workflow needs: the model files its loader nodes name and the node types it uses.

The result is plain data (``Requirements.to_json``) so the scan stage can keep it per content hash and skip
parsing an unchanged workflow next cycle.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfywatchman.comfy.folders import MODEL_EXTENSIONS
from comfywatchman.workflow import names
from comfywatchman.workflow.load import Workflow

INACTIVE_MODES = {2: "muted", 4: "bypassed"}
# Bumped whenever extraction changes, so requirements kept from an earlier cycle are recomputed.
EXTRACTOR_VERSION = 1


@dataclass(frozen=True)
class LoaderInput:
    """One model input of a loader node: its folder type and its position among the widgets."""

    input: str
    folder: str
    index: int


def loader_table(config_loaders: Mapping[str, Mapping[str, Any]]) -> dict[str, list[LoaderInput]]:
    """Return the loader table from config: node type -> its model inputs with folder and widget index."""
    table: dict[str, list[LoaderInput]] = {}
    for node_type, inputs in config_loaders.items():
        entries = []
        for position, (input_name, spec) in enumerate(inputs.items()):
            if isinstance(spec, str):
                entries.append(LoaderInput(input_name, spec, position))
            else:
                entries.append(LoaderInput(input_name, spec["folder"], spec.get("index", position)))
        table[node_type] = entries
    return table


@dataclass
class Origin:
    """Where in the workflow a requirement comes from."""

    node_id: str
    node_type: str
    input: str | None
    subgraph_path: list[str]
    mode: str  # active | muted | bypassed
    via: str  # widget | declared | fallback

    def to_json(self) -> dict[str, Any]:
        """Return the origin as stored in scan.json."""
        return dict(self.__dict__)


@dataclass
class ModelRef:
    """One model file a workflow needs, with every place that names it and any author declaration."""

    name: str
    folder: str | None
    origins: list[Origin] = field(default_factory=list)
    declarations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """True when at least one node that needs the file runs (is neither muted nor bypassed)."""
        return any(o.mode == "active" for o in self.origins) or not self.origins

    def to_json(self) -> dict[str, Any]:
        """Return the reference as stored in scan.json."""
        return {
            "name": self.name,
            "folder": self.folder,
            "origins": [o.to_json() for o in self.origins],
            "declarations": self.declarations,
        }


@dataclass
class NodeRef:
    """One node type a workflow uses, with the ids of the nodes of that type."""

    class_type: str
    node_ids: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """True when at least one node of this type runs."""
        return "active" in self.modes or not self.modes

    def to_json(self) -> dict[str, Any]:
        """Return the node type use as stored in scan.json."""
        return {"class_type": self.class_type, "node_ids": self.node_ids, "modes": self.modes}


@dataclass
class Requirements:
    """Everything a workflow needs."""

    models: list[ModelRef] = field(default_factory=list)
    nodes: list[NodeRef] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the requirements as stored in scan.json."""
        return {"models": [m.to_json() for m in self.models], "nodes": [n.to_json() for n in self.nodes]}


@dataclass
class _Collector:
    placeholders: frozenset[str]
    models: dict[tuple[str | None, str], ModelRef] = field(default_factory=dict)
    nodes: dict[str, NodeRef] = field(default_factory=dict)

    def add_model(self, name: Any, folder: str | None, origin: Origin, declaration: dict[str, Any] | None = None) -> None:
        if not isinstance(name, str) or name.strip().casefold() in self.placeholders:
            return
        key = (folder, names.lookup_key(name))
        ref = self.models.get(key)
        if ref is None and declaration is not None:
            # A declaration usually gives the bare file name while the widget may carry a subfolder.
            ref = next(
                (
                    r
                    for (f, _), r in self.models.items()
                    if f == folder and names.basename(r.name).casefold() == names.basename(name).casefold()
                ),
                None,
            )
        if ref is None:
            ref = self.models[key] = ModelRef(name=name, folder=folder)
        if origin not in ref.origins:
            ref.origins.append(origin)
        if declaration is not None and declaration not in ref.declarations:
            ref.declarations.append(declaration)

    def add_node(self, class_type: str, node_id: str, mode: str) -> None:
        ref = self.nodes.setdefault(class_type, NodeRef(class_type))
        ref.node_ids.append(node_id)
        ref.modes.append(mode)

    def result(self) -> Requirements:
        models = sorted(self.models.values(), key=lambda m: (m.folder or "~", names.lookup_key(m.name)))
        return Requirements(models=models, nodes=sorted(self.nodes.values(), key=lambda n: n.class_type))


def extract(workflow: Workflow, loaders: Mapping[str, list[LoaderInput]], placeholders: frozenset[str]) -> Requirements:
    """Return the model files and node types ``workflow`` needs.

    Loader inputs come from ``loaders``; values in ``placeholders`` (compared case-folded) name no file. Nodes
    not in the table still yield any string widget ending in a model extension, with an unknown folder.
    """
    collector = _Collector(placeholders)
    if workflow.format == "api":
        _extract_api(workflow.data, loaders, collector)
    else:
        _extract_ui(workflow.data, loaders, collector)
    return collector.result()


def _mode(node: Mapping[str, Any]) -> str:
    mode = node.get("mode", 0)
    return INACTIVE_MODES.get(mode, "active") if isinstance(mode, int) else "active"


def _declarations(entries: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
            yield {
                "name": entry["name"],
                "url": entry.get("url") if isinstance(entry.get("url"), str) else None,
                "directory": entry.get("directory") if isinstance(entry.get("directory"), str) else None,
                "hash": entry.get("hash") if isinstance(entry.get("hash"), str) else None,
                "hash_type": entry.get("hash_type") if isinstance(entry.get("hash_type"), str) else None,
            }


def _ui_node_lists(data: Mapping[str, Any]) -> Iterator[tuple[list[str], list[Any]]]:
    yield [], data.get("nodes") or []
    pending = [([], data.get("definitions"))]
    while pending:
        path, definitions = pending.pop()
        if not isinstance(definitions, dict):
            continue
        for subgraph in definitions.get("subgraphs") or []:
            if not isinstance(subgraph, dict):
                continue
            sub_path = [*path, str(subgraph.get("name") or subgraph.get("id"))]
            yield sub_path, subgraph.get("nodes") or []
            pending.append((sub_path, subgraph.get("definitions")))


def _subgraph_ids(data: Mapping[str, Any]) -> set[str]:
    ids: set[str] = set()
    pending = [data.get("definitions")]
    while pending:
        definitions = pending.pop()
        if isinstance(definitions, dict):
            for subgraph in definitions.get("subgraphs") or []:
                if isinstance(subgraph, dict) and isinstance(subgraph.get("id"), str):
                    ids.add(subgraph["id"])
                    pending.append(subgraph.get("definitions"))
    return ids


def _extract_ui(data: Mapping[str, Any], loaders: Mapping[str, list[LoaderInput]], out: _Collector) -> None:
    subgraph_ids = _subgraph_ids(data)
    for path, nodes in _ui_node_lists(data):
        for node in nodes:
            if not isinstance(node, dict) or not isinstance(node.get("type"), str):
                continue
            node_type, node_id, mode = node["type"], str(node.get("id")), _mode(node)
            if node_type not in subgraph_ids:
                out.add_node(node_type, node_id, mode)
            values = node.get("widgets_values")
            if node_type in loaders:
                for spec in loaders[node_type]:
                    value = _widget_value(values, spec)
                    out.add_model(value, spec.folder, Origin(node_id, node_type, spec.input, path, mode, "widget"))
            elif node_type not in subgraph_ids:
                for input_name, value in _fallback_values(values):
                    out.add_model(value, None, Origin(node_id, node_type, input_name, path, mode, "fallback"))
            properties = node.get("properties")
            if isinstance(properties, dict):
                for decl in _declarations(properties.get("models")):
                    origin = Origin(node_id, node_type, None, path, mode, "declared")
                    out.add_model(decl["name"], decl["directory"], origin, decl)
    for decl in _declarations(data.get("models")):
        out.add_model(decl["name"], decl["directory"], Origin("workflow", "workflow", None, [], "active", "declared"), decl)


def _widget_value(values: Any, spec: LoaderInput) -> Any:
    if isinstance(values, dict):
        return values.get(spec.input)
    if isinstance(values, list) and spec.index < len(values):
        return values[spec.index]
    return None


def _fallback_values(values: Any) -> Iterator[tuple[str | None, str]]:
    if isinstance(values, dict):
        items: Iterator[tuple[Any, Any]] = iter(values.items())
    elif isinstance(values, list):
        items = ((None, v) for v in values)
    else:
        return
    for key, value in items:
        if isinstance(value, str) and os.path.splitext(value.strip())[1].lower() in MODEL_EXTENSIONS:
            yield key, value


def _extract_api(data: Mapping[str, Any], loaders: Mapping[str, list[LoaderInput]], out: _Collector) -> None:
    for node_id, node in data.items():
        class_type = node.get("class_type")
        if not isinstance(class_type, str):
            continue
        out.add_node(class_type, str(node_id), "active")
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        if class_type in loaders:
            for spec in loaders[class_type]:
                value = inputs.get(spec.input)
                if isinstance(value, str):
                    out.add_model(value, spec.folder, Origin(str(node_id), class_type, spec.input, [], "active", "widget"))
        else:
            for input_name, value in _fallback_values(inputs):
                out.add_model(value, None, Origin(str(node_id), class_type, input_name, [], "active", "fallback"))
