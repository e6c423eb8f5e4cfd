"""One graph of a UI workflow (the top level or a subgraph definition): its nodes and links, and the
lookups the extractor needs (what feeds an input, which inner widgets a subgraph input reaches)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# origin node id, origin slot, target node id, target slot
Link = tuple[str, int, str, int]
SUBGRAPH_INPUT_NODE = "-10"  # the id subgraph definitions give their input node
MAX_REROUTES = 32


class Graph:
    """Nodes by id and links by id of one graph level.

    Only ``nodes`` is made up front: most graphs never need the lookups (a loader fed by a primitive, a
    subgraph input), so ``by_id`` and ``links`` are built on first use.
    """

    __slots__ = ("_by_id", "_has_primitive", "_links", "_raw_links", "nodes")

    def __init__(
        self,
        nodes: list[dict[str, Any]],
        by_id: dict[str, dict[str, Any]] | None = None,
        links: dict[Any, Link] | None = None,
        raw_links: Any = None,
    ) -> None:
        self.nodes = nodes
        self._by_id = by_id
        self._links = links
        self._raw_links = raw_links
        self._has_primitive: bool | None = None

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Graph:
        """Return the graph of a workflow or subgraph definition (links as 0.4 lists or v1 objects)."""
        raw_nodes = data.get("nodes")
        nodes: list[dict[str, Any]]
        if not isinstance(raw_nodes, list):
            nodes = []
        elif set(map(type, raw_nodes)) == {dict}:
            nodes = raw_nodes  # every entry a node (as good as every file): no copy, no loop in Python
        else:
            nodes = [n for n in raw_nodes if isinstance(n, dict)]
        return cls(nodes, raw_links=data.get("links"))

    @property
    def by_id(self) -> dict[str, dict[str, Any]]:
        """Node id (as a string) -> node."""
        if self._by_id is None:
            self._by_id = {str(n.get("id")): n for n in self.nodes}
        return self._by_id

    @property
    def links(self) -> dict[Any, Link]:
        """Link id -> (origin node id, origin slot, target node id, target slot)."""
        if self._links is None:
            self._links = _links_of(self._raw_links)
        return self._links

    def primitive_value(self, link_id: Any) -> Any | None:
        """Return the value a PrimitiveNode sends down ``link_id`` (through Reroutes), or None if none does."""
        if self._has_primitive is None:
            # Links lead only to nodes of this graph: without a PrimitiveNode among them no link carries a value,
            # and the link and node lookups (every link and node of the graph) need not be built for it.
            nodes = self.nodes if self._by_id is None else self._by_id.values()
            self._has_primitive = any(n.get("type") == "PrimitiveNode" for n in nodes)
        if not self._has_primitive:
            return None
        for _ in range(MAX_REROUTES):
            link = self.links.get(link_id) if is_link_id(link_id) else None
            if link is None:
                return None
            origin = self.by_id.get(link[0])
            if origin is None:
                return None
            if origin.get("type") == "PrimitiveNode":
                values = origin.get("widgets_values")
                if isinstance(values, list) and values:
                    return values[0]
                if isinstance(values, dict) and values:
                    return next(iter(values.values()))
                return None
            if origin.get("type") != "Reroute":
                return None
            inputs = origin.get("inputs")
            if not (isinstance(inputs, list) and inputs and isinstance(inputs[0], dict)):
                return None
            link_id = inputs[0].get("link")
        return None

    def input_targets(self, sub_input: Any, widgets_only: bool) -> list[tuple[str, str]]:
        """Return ``(inner node id, widget name)`` for each inner input the subgraph input ``sub_input`` feeds.

        With ``widgets_only``, inputs that are plain sockets (no ``widget``) are left out.
        """
        if not isinstance(sub_input, dict):
            return []
        targets: list[tuple[str, str]] = []
        link_ids = sub_input.get("linkIds")
        for link_id in link_ids if isinstance(link_ids, list) else ():
            link = self.links.get(link_id) if is_link_id(link_id) else None
            if link is None:
                continue
            node = self.by_id.get(link[2])
            inputs = node.get("inputs") if node is not None else None
            if not isinstance(inputs, list) or not 0 <= link[3] < len(inputs) or not isinstance(inputs[link[3]], dict):
                continue
            entry = inputs[link[3]]
            widget = entry.get("widget")
            if isinstance(widget, dict) and isinstance(widget.get("name"), str):
                targets.append((link[2], widget["name"]))
            elif not widgets_only and isinstance(entry.get("name"), str):
                targets.append((link[2], entry["name"]))
        return targets


def _links_of(raw_links: Any) -> dict[Any, Link]:
    links: dict[Any, Link] = {}
    for link in raw_links if isinstance(raw_links, list) else ():
        if isinstance(link, list) and len(link) >= 5:
            link_id, origin, origin_slot, target, target_slot = link[:5]
        elif isinstance(link, dict):
            link_id, origin, origin_slot = link.get("id"), link.get("origin_id"), link.get("origin_slot")
            target, target_slot = link.get("target_id"), link.get("target_slot")
        else:
            continue
        if isinstance(origin_slot, int) and isinstance(target_slot, int) and is_link_id(link_id):
            links[link_id] = (str(origin), origin_slot, str(target), target_slot)
    return links


def is_link_id(value: Any) -> bool:
    """Return whether ``value`` can be a link id (a number or a string: a list or an object is a broken file)."""
    return isinstance(value, (int, float, str))


def as_list(value: Any) -> list[Any]:
    """Return ``value`` when it is a list, else an empty one (a broken file's ``inputs`` may be anything)."""
    return value if isinstance(value, list) else []


def subgraph_definitions(data: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return every subgraph definition of a workflow by id, nested ``definitions`` included."""
    found: dict[str, dict[str, Any]] = {}
    pending = [data.get("definitions")]
    while pending:
        definitions = pending.pop()
        if not isinstance(definitions, dict):
            continue
        for subgraph in as_list(definitions.get("subgraphs")):
            if isinstance(subgraph, dict) and isinstance(subgraph.get("id"), str) and subgraph["id"] not in found:
                found[subgraph["id"]] = subgraph
                pending.append(subgraph.get("definitions"))
    return found


def group_node_name(node_type: str) -> str | None:
    """Return the legacy group node name in a type ``workflow>NAME`` (or older ``workflow/NAME``), else None."""
    for prefix in ("workflow>", "workflow/"):
        if node_type.startswith(prefix):
            return node_type[len(prefix) :]
    return None
