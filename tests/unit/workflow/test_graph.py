"""One graph level's lookups: what a PrimitiveNode sends down a link, through Reroutes."""

from __future__ import annotations

from typing import Any

from comfywatchman.workflow.graph import Graph


def _node(node_id: int, node_type: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": node_type, **extra}


def test_primitive_value_follows_reroutes_to_a_primitive() -> None:
    nodes = [
        _node(1, "PrimitiveNode", widgets_values=["wanted.safetensors", "fixed"]),
        _node(2, "Reroute", inputs=[{"link": 7}]),
        _node(3, "CheckpointLoaderSimple"),
    ]
    graph = Graph.of({"nodes": nodes, "links": [[7, 1, 0, 2, 0, "*"], [8, 2, 0, 3, 0, "COMBO"]]})
    assert graph.primitive_value(8) == "wanted.safetensors"
    assert graph.primitive_value(7) == "wanted.safetensors"


def test_primitive_value_is_none_in_a_graph_without_primitives() -> None:
    nodes = [_node(1, "LoadImage"), _node(2, "Reroute", inputs=[{"link": 7}]), _node(3, "CheckpointLoaderSimple")]
    graph = Graph.of({"nodes": nodes, "links": [[7, 1, 0, 2, 0, "*"], [8, 2, 0, 3, 0, "COMBO"]]})
    assert graph.primitive_value(8) is None
    assert graph.primitive_value(99) is None


def test_primitive_value_reads_a_given_node_lookup() -> None:
    primitive = _node(1, "PrimitiveNode", widgets_values={"value": "given.safetensors"})
    graph = Graph([], {"1": primitive}, {5: ("1", 0, "2", 0)})
    assert graph.primitive_value(5) == "given.safetensors"
