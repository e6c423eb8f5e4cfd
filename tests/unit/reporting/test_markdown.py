"""The Markdown report's line about ComfyUI-Manager's maps."""

from __future__ import annotations

from comfywatchman.reporting import markdown


def test_manager_line_names_each_map_its_source_and_version() -> None:
    line = markdown.manager_line(
        {
            "node_map": {
                "path": "/c/custom_nodes/ComfyUI-Manager/extension-node-map.json",
                "source": "custom_nodes",
                "version": "3.41",
            },
            "model_list": {"path": "/v/comfyui_manager/model-list.json", "source": "tool_env", "version": None},
        }
    )
    assert line == (
        "ComfyUI-Manager: node map `/c/custom_nodes/ComfyUI-Manager/extension-node-map.json` (custom_nodes 3.41); "
        "model list `/v/comfyui_manager/model-list.json` (tool_env)"
    )


def test_manager_line_when_no_map_was_found() -> None:
    line = markdown.manager_line({"node_map": None, "model_list": None})
    assert line == "ComfyUI-Manager: node map: none found; model list: none found"
