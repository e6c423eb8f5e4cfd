"""What the extractor finds in UI (0.4 and 1) and API workflows: loaders, subgraphs, group nodes,
primitives, modes, embeddings, declarations and the fallback for unknown nodes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

import pytest

from comfywatchman import resources
from comfywatchman.workflow import extract
from comfywatchman.workflow.load import Workflow, from_data
from tests.helpers.limits import deadline

DEFAULTS = tomllib.loads(resources.DEFAULT_CONFIG.read_text(encoding="utf-8"))["scan"]
LOADERS = extract.loader_table(DEFAULTS["loaders"])
PLACEHOLDERS = frozenset(v.casefold() for v in DEFAULTS["placeholder_values"])


def node(node_id: int, node_type: str, widgets: Any = None, mode: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": node_type,
        "mode": mode,
        "inputs": [],
        "outputs": [],
        "properties": {},
        "widgets_values": [] if widgets is None else widgets,
        **extra,
    }


def ui(nodes: list[dict[str, Any]], links: list[Any] | None = None, **extra: Any) -> Workflow:
    return from_data({"nodes": nodes, "links": links or [], "version": 0.4, **extra}, Path("w.json"))


def run(workflow: Workflow) -> extract.Requirements:
    return extract.extract(workflow, LOADERS, PLACEHOLDERS)


def models(req: extract.Requirements) -> dict[tuple[str | None, str], extract.ModelRef]:
    return {(m.folder, m.name): m for m in req.models}


def test_extract_reads_core_loaders_and_skips_placeholders() -> None:
    req = run(
        ui(
            [
                node(1, "CheckpointLoaderSimple", ["sd_xl_base_1.0.safetensors"]),
                node(2, "VAELoader", ["pixel_space"]),
                node(3, "DualCLIPLoader", ["clip_l.safetensors", "t5xxl_fp16.safetensors", "flux", "default"]),
                node(4, "LoraLoader", ["None", 1.0, 1.0]),
            ]
        )
    )
    assert set(models(req)) == {
        ("checkpoints", "sd_xl_base_1.0.safetensors"),
        ("text_encoders", "clip_l.safetensors"),
        ("text_encoders", "t5xxl_fp16.safetensors"),
    }
    origin = models(req)[("checkpoints", "sd_xl_base_1.0.safetensors")].origins[0]
    assert (origin.node_id, origin.node_type, origin.input, origin.via) == (
        "1",
        "CheckpointLoaderSimple",
        "ckpt_name",
        "widget",
    )


def test_extract_reads_widgets_values_given_as_object() -> None:
    req = run(ui([node(1, "UNETLoader", {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"})]))
    assert ("diffusion_models", "flux1-dev.safetensors") in models(req)


def test_extract_reads_pack_loaders_from_the_table() -> None:
    req = run(
        ui(
            [
                node(1, "UnetLoaderGGUF", ["flux1-dev-Q4_K_S.gguf"]),
                node(2, "IPAdapterModelLoader", ["ip-adapter_sdxl.safetensors"]),
                node(3, "ADE_LoadAnimateDiffModel", ["mm_sd_v15_v2.ckpt"]),
                node(4, "UltralyticsDetectorProvider", ["bbox/face_yolov8m.pt"]),
                node(5, "SAMLoader", ["sam_vit_b_01ec64.pth", "AUTO"]),
                node(6, "ReActorFaceSwap", [True, "inswapper_128.onnx", "retinaface_resnet50", "none", 1, 0.5]),
            ]
        )
    )
    assert {k for k in models(req)} == {
        ("diffusion_models", "flux1-dev-Q4_K_S.gguf"),
        ("ipadapter", "ip-adapter_sdxl.safetensors"),
        ("animatediff_models", "mm_sd_v15_v2.ckpt"),
        ("ultralytics", "bbox/face_yolov8m.pt"),
        ("sams", "sam_vit_b_01ec64.pth"),
        ("insightface", "inswapper_128.onnx"),
    }


def test_extract_unknown_node_model_string_is_requirement_of_unknown_folder() -> None:
    req = run(
        ui(
            [
                node(1, "SomePackLoader", ["my_model.safetensors", 3, "https://host/x.safetensors"]),
                node(2, "Note", ["remember to download x.safetensors"]),
                node(3, "Power Lora Loader (rgthree)", [{}, {"on": True, "lora": "style.safetensors", "strength": 1}]),
            ]
        )
    )
    assert set(models(req)) == {(None, "my_model.safetensors"), (None, "style.safetensors")}
    assert models(req)[(None, "my_model.safetensors")].origins[0].via == "fallback"


def test_extract_reads_declarations_and_merges_them_with_widget_values() -> None:
    declared = {"name": "vae.safetensors", "url": "https://huggingface.co/x/vae.safetensors", "directory": "vae"}
    req = run(
        ui(
            [node(1, "VAELoader", ["SDXL\\vae.safetensors"], properties={"models": [declared]})],
            models=[{"name": "extra.safetensors", "url": "https://h/extra.safetensors", "directory": "loras"}],
        )
    )
    found = models(req)
    ref = found[("vae", "SDXL\\vae.safetensors")]
    assert [o.via for o in ref.origins] == ["widget", "declared"]
    assert ref.declarations[0]["url"] == declared["url"]
    assert found[("loras", "extra.safetensors")].origins[0].node_id == "workflow"


def test_extract_marks_muted_and_bypassed_nodes_inactive() -> None:
    req = run(
        ui(
            [
                node(1, "LoraLoader", ["a.safetensors", 1, 1], mode=4),
                node(2, "LoraLoader", ["b.safetensors", 1, 1], mode=2),
                node(3, "LoraLoader", ["c.safetensors", 1, 1]),
            ]
        )
    )
    found = models(req)
    assert [found[("loras", n)].active for n in ("a.safetensors", "b.safetensors", "c.safetensors")] == [
        False,
        False,
        True,
    ]
    assert found[("loras", "a.safetensors")].origins[0].mode == "bypassed"
    assert req.nodes[0].modes == ["bypassed", "muted", "active"]


def test_extract_takes_loader_value_from_primitive_node_feeding_converted_input() -> None:
    loader = node(
        2,
        "CheckpointLoaderSimple",
        ["stale.safetensors"],
        inputs=[{"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": 9}],
    )
    primitive = node(1, "PrimitiveNode", ["wanted.safetensors", "fixed"])
    req = run(ui([primitive, loader], links=[[9, 1, 0, 2, 0, "COMBO"]]))
    assert set(models(req)) == {("checkpoints", "wanted.safetensors")}
    assert models(req)[("checkpoints", "wanted.safetensors")].origins[0].via == "primitive"
    assert "PrimitiveNode" in {n.class_type for n in req.nodes}


def _subgraph(
    sub_id: str,
    name: str,
    nodes: list[dict[str, Any]],
    inputs: list[dict[str, Any]] | None = None,
    links: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": sub_id,
        "name": name,
        "inputs": inputs or [],
        "outputs": [],
        "widgets": [],
        "nodes": nodes,
        "links": links or [],
    }


INNER_ID = "11111111-1111-4111-8111-111111111111"
OUTER_ID = "22222222-2222-4222-8222-222222222222"


def _promoting_subgraph() -> dict[str, Any]:
    """A subgraph whose input ``ckpt_name`` feeds the widget of its inner checkpoint loader (node 5)."""
    loader = node(
        5,
        "CheckpointLoaderSimple",
        ["inner_default.safetensors"],
        inputs=[{"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": 50}],
    )
    return _subgraph(
        INNER_ID,
        "Load model",
        [loader, node(6, "VAELoader", ["inner_vae.safetensors"])],
        inputs=[{"name": "ckpt_name", "type": "COMBO", "linkIds": [50]}],
        links=[{"id": 50, "origin_id": -10, "origin_slot": 0, "target_id": 5, "target_slot": 0, "type": "COMBO"}],
    )


def test_extract_instance_widget_value_overrides_inner_loader() -> None:
    instance = node(
        3,
        INNER_ID,
        ["promoted.safetensors"],
        inputs=[{"name": "ckpt_name", "type": "COMBO", "widget": {"name": "ckpt_name"}, "link": None}],
    )
    req = run(ui([instance], definitions={"subgraphs": [_promoting_subgraph()]}))
    found = models(req)
    assert ("checkpoints", "inner_default.safetensors") not in found
    origin = found[("checkpoints", "promoted.safetensors")].origins[0]
    assert (origin.node_id, origin.subgraph_path, origin.via) == ("3:5", ["Load model"], "promoted")
    assert ("vae", "inner_vae.safetensors") in found  # not promoted: the inner value stands
    assert INNER_ID not in {n.class_type for n in req.nodes}  # an instance is never a node type


def test_extract_proxy_widgets_override_inner_value_only_when_instance_holds_values() -> None:
    with_value = node(3, INNER_ID, ["proxied.safetensors"], properties={"proxyWidgets": [["5", "ckpt_name"]]})
    without = node(4, INNER_ID, [], properties={"proxyWidgets": [["5", "ckpt_name"]]})
    found = models(run(ui([with_value, without], definitions={"subgraphs": [_promoting_subgraph()]})))
    assert ("checkpoints", "proxied.safetensors") in found
    # The second instance promotes nothing: the inner value is what runs there.
    assert [o.node_id for o in found[("checkpoints", "inner_default.safetensors")].origins] == ["4:5"]


def test_extract_walks_nested_instances_with_their_mode() -> None:
    outer = _subgraph(OUTER_ID, "Pipeline", [node(7, INNER_ID, [])])
    req = run(ui([node(1, OUTER_ID, [], mode=4)], definitions={"subgraphs": [outer, _promoting_subgraph()]}))
    ref = models(req)[("checkpoints", "inner_default.safetensors")]
    origin = ref.origins[0]
    assert (origin.node_id, origin.subgraph_path, origin.mode) == ("1:7:5", ["Pipeline", "Load model"], "bypassed")
    assert not ref.active
    assert {n.class_type for n in req.nodes} == {"CheckpointLoaderSimple", "VAELoader"}


def test_extract_reads_v1_links_and_models_only_inside_subgraphs() -> None:
    sub = _subgraph(
        INNER_ID,
        "Only inside",
        [
            node(
                5,
                "UNETLoader",
                ["inside.safetensors", "default"],
                properties={
                    "models": [
                        {
                            "name": "inside.safetensors",
                            "url": "https://h/inside.safetensors",
                            "directory": "diffusion_models",
                        }
                    ]
                },
            )
        ],
    )
    data = {
        "version": 1,
        "state": {},
        "nodes": [node(1, INNER_ID, [])],
        "links": [],
        "definitions": {"subgraphs": [sub]},
    }
    ref = models(run(from_data(data, Path("v1.json"))))[("diffusion_models", "inside.safetensors")]
    assert [o.via for o in ref.origins] == ["widget", "declared"]


def test_extract_walks_legacy_group_nodes_with_instance_values() -> None:
    group = {
        "nodes": [
            {"index": 0, "type": "CheckpointLoaderSimple", "widgets_values": ["inner.safetensors"]},
            {"index": 1, "type": "CLIPTextEncode", "widgets_values": ["a cat, embedding:neg"]},
        ],
        "links": [],
        "external": [],
    }
    instance = node(4, "workflow>Loader group", ["outer.safetensors", "a dog"])
    req = run(ui([instance], extra={"groupNodes": {"Loader group": group}}))
    found = models(req)
    assert set(found) == {("checkpoints", "outer.safetensors")}
    assert found[("checkpoints", "outer.safetensors")].origins[0].node_id == "4:0"
    assert {n.class_type for n in req.nodes} == {"CheckpointLoaderSimple", "CLIPTextEncode"}


def test_extract_finds_embeddings_in_prompt_text() -> None:
    req = run(ui([node(1, "CLIPTextEncode", ["(embedding:EasyNegative:1.2), embedding:bad.pt, lowres"])]))
    found = models(req)
    assert set(found) == {("embeddings", "EasyNegative"), ("embeddings", "bad.pt")}
    assert found[("embeddings", "EasyNegative")].from_prompt_only


def test_extract_reads_api_prompt() -> None:
    data = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "SDXL/base.safetensors"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "embedding:neg", "clip": ["4", 1]}},
        "9": {"class_type": "LoraLoader", "inputs": {"lora_name": ["12", 0], "model": ["4", 0]}},
        "12": {"class_type": "CustomLoader", "inputs": {"file": "thing.pth"}},
    }
    workflow = from_data(data, Path("api.json"))
    assert workflow.format == "api"
    found = models(run(workflow))
    assert set(found) == {("checkpoints", "SDXL/base.safetensors"), ("embeddings", "neg"), (None, "thing.pth")}


@pytest.mark.parametrize("wrapper", ["workflow", "prompt"])
def test_from_data_unwraps_containers(wrapper: str) -> None:
    inner = {"nodes": []} if wrapper == "workflow" else {"1": {"class_type": "X", "inputs": {}}}
    assert from_data({wrapper: inner}, Path("w.json")).data is inner


# Malformed and hostile workflows (issue 10): no exception, and work bounded by the file's size.


@pytest.mark.parametrize("bad", [7, "ckpt_name", {"name": "ckpt_name"}, None, 1.5])
def test_inputs_and_link_ids_that_are_not_lists_are_ignored(bad: Any) -> None:
    sub = _promoting_subgraph()
    sub["inputs"][0]["linkIds"] = bad
    instance = node(3, INNER_ID, ["promoted.safetensors"], inputs=bad)
    loader = node(1, "CheckpointLoaderSimple", ["plain.safetensors"], inputs=bad)
    found = models(run(ui([instance, loader], definitions={"subgraphs": [sub]})))
    assert ("checkpoints", "plain.safetensors") in found
    sub["inputs"] = bad
    found = models(run(ui([instance, loader], definitions={"subgraphs": [sub]})))
    assert ("checkpoints", "inner_default.safetensors") in found


def test_a_link_id_that_is_a_list_or_an_object_is_ignored() -> None:
    sub = _promoting_subgraph()
    sub["inputs"][0]["linkIds"] = [[50], {"id": 50}]
    sub["links"].append({"id": [1, 2], "origin_id": 1, "origin_slot": 0, "target_id": 5, "target_slot": 0})
    primitive_fed = node(
        8, "LoraLoader", ["own.safetensors", 1, 1], inputs=[{"name": "lora_name", "widget": {"name": "lora_name"}}]
    )
    primitive_fed["inputs"][0]["link"] = [9]
    found = models(run(ui([node(3, INNER_ID, ["x.safetensors"]), primitive_fed], definitions={"subgraphs": [sub]})))
    assert {("checkpoints", "inner_default.safetensors"), ("loras", "own.safetensors")} <= set(found)


def _chain(depth: int) -> Workflow:
    """A workflow whose subgraph ``s0`` holds an instance of ``s1``, which holds ``s2``, ... ``depth`` deep;
    the innermost holds a loader."""
    subgraphs = [
        _subgraph(f"s{i}", f"level {i}", [node(1, f"s{i + 1}")] if i + 1 < depth else [node(1, "VAELoader", ["v.sft"])])
        for i in range(depth)
    ]
    return ui([node(1, "s0")], definitions={"subgraphs": subgraphs})


def test_a_chain_of_2000_nested_subgraphs_is_walked_without_recursion() -> None:
    with deadline(20):
        ref = models(run(_chain(2000)))[("vae", "v.sft")]
    assert len(ref.origins) == 1 and len(ref.origins[0].subgraph_path) == 2000
    assert ref.origins[0].node_id == ":".join(["1"] * 2001)


def _fan_out(levels: int) -> Workflow:
    """Each level holds two instances of the next (2**levels paths); the innermost holds a loader."""
    subgraphs = [_subgraph(f"f{i}", f"fan {i}", [node(1, f"f{i + 1}"), node(2, f"f{i + 1}")]) for i in range(levels)]
    subgraphs.append(_subgraph(f"f{levels}", "leaf", [node(1, "VAELoader", ["leaf.sft"]), node(2, "Note", ["x"])]))
    return ui([node(1, "f0")], definitions={"subgraphs": subgraphs})


@pytest.mark.parametrize("levels", [13, 30])
def test_subgraph_fan_out_is_expanded_within_a_bound(levels: int) -> None:
    with deadline(10):
        req = run(_fan_out(levels))
    ref = models(req)[("vae", "leaf.sft")]
    assert ref.origins[0].node_id == ":".join(["1"] * (levels + 2))
    # Every path is walked while that stays within the allowance; past it each definition once.
    visits = len(next(n for n in req.nodes if n.class_type == "VAELoader").node_ids)
    assert visits <= extract.VISIT_ALLOWANCE


def test_a_fan_out_within_the_allowance_keeps_every_path() -> None:
    req = run(_fan_out(10))  # every instance walked, as ComfyUI runs it
    ids = next(n for n in req.nodes if n.class_type == "VAELoader").node_ids
    assert len(ids) == len(set(ids)) == 2**10


def test_origins_are_de_duplicated_in_linear_time() -> None:
    loaders = [node(i, "CheckpointLoaderSimple", ["same.safetensors"]) for i in range(1, 40_001)]
    with deadline(10):
        ref = models(run(ui(loaders)))[("checkpoints", "same.safetensors")]
    assert len(ref.origins) == 40_000


@pytest.mark.parametrize("count", [2, extract.COMPARED_ORIGINS - 1, extract.COMPARED_ORIGINS, 30])
def test_a_repeated_origin_is_kept_once_whether_compared_or_keyed(count: int) -> None:
    """A model's first few origins are compared, later ones told apart by key: a node met twice (the same id,
    type, input and mode) is one origin either way, in the order first met."""
    loaders = [node(i, "CheckpointLoaderSimple", ["same.safetensors"]) for i in range(1, count + 1)]
    again = [
        node(1, "CheckpointLoaderSimple", ["same.safetensors"]),
        node(count, "CheckpointLoaderSimple", ["same.safetensors"]),
    ]
    muted = node(1, "CheckpointLoaderSimple", ["same.safetensors"], mode=2)
    ref = models(run(ui([*loaders, *again, muted])))[("checkpoints", "same.safetensors")]
    assert [(o.node_id, o.mode) for o in ref.origins] == [(str(i), "active") for i in range(1, count + 1)] + [
        ("1", "muted")
    ]


def test_extract_json_is_what_the_requirements_give() -> None:
    workflow = ui(
        [
            node(1, "CheckpointLoaderSimple", ["a.safetensors"], properties={"cnr_id": "comfy-core", "ver": "0.3"}),
            node(2, "CLIPTextEncode", ["embedding:bad_hands, a cat"]),
            node(3, "LoraLoader", ["b.safetensors", 1.0, 1.0], mode=4),
            node(4, "UnknownNode", ["c.ckpt"]),
        ],
        models=[{"name": "a.safetensors", "url": "https://example.com/a", "directory": "checkpoints"}],
    )
    found = extract.extract_json(workflow, LOADERS, PLACEHOLDERS)
    assert found == run(workflow).to_json()
    assert [m["name"] for m in found["models"]] == ["a.safetensors", "bad_hands", "b.safetensors", "c.ckpt"]
    assert extract.Requirements.from_json(found) == run(workflow)


def test_more_distinct_node_types_than_any_workflow_is_refused() -> None:
    nodes = [node(i, f"Type{i}") for i in range(extract.MAX_NODE_TYPES + 1)]
    with deadline(10), pytest.raises(extract.TooLarge, match="more than 10000 node types"):
        run(ui(nodes))
    assert len(run(ui(nodes[:-1])).nodes) == extract.MAX_NODE_TYPES


# -- issue 11: widget words are no model names -------------------------------------------------------------


def test_extract_takes_no_word_as_model_when_loader_widget_holds_no_file_name() -> None:
    # The bench's ReActor node: the table's widget positions hold "enable" and "lanczos" there.
    reactor = node(1, "ReActorFaceSwap", [1, "enable", True, 512, "lanczos", "enable", 1, "lanczos", 512, True, 1])
    real = node(
        2, "ReActorFaceSwap", [True, "inswapper_128.onnx", "retinaface_resnet50", "codeformer-v0.1.0.pth", 1, 0.5]
    )
    found = models(run(ui([reactor, real])))
    assert set(found) == {("insightface", "inswapper_128.onnx"), ("facerestore_models", "codeformer-v0.1.0.pth")}


def test_extract_keeps_extensionless_names_when_input_takes_them() -> None:
    workflow = ui(
        [
            node(1, "DiffusersLoader", ["stable-diffusion-v1-5"]),  # diffusers models are folders
            node(2, "CheckpointLoader", ["v1-inference.yaml", "sd15.ckpt"]),  # configs keep their .yaml
            node(3, "RepoLoader", ["org/some-repo", "lanczos"]),
        ]
    )
    table = extract.loader_table(
        {**DEFAULTS["loaders"], "RepoLoader": {"repo": {"folder": "LLM", "extensionless": True}, "method": "LLM"}}
    )
    found = {(m.folder, m.name) for m in extract.extract(workflow, table, PLACEHOLDERS).models}
    assert found == {
        ("diffusers", "stable-diffusion-v1-5"),
        ("configs", "v1-inference.yaml"),
        ("checkpoints", "sd15.ckpt"),
        ("LLM", "org/some-repo"),
    }


def test_extract_takes_no_word_as_model_when_api_prompt_loader_holds_one() -> None:
    data = {"1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "lanczos"}}}
    assert models(run(from_data(data, Path("api.json")))) == {}
