"""Writes a large, realistic ComfyUI install for the scanner benchmark.

The tree has the shape of a heavy user's install, with made-up names:

- ``models/<folder>/...``: zero-byte model files spread over the real folder names (legacy ``unet`` and
  ``clip`` and pack folders included), nested up to three subfolders deep, next to the files a real tree
  also holds (``put_*_here`` markers, ``.preview.png`` / ``.civitai.info`` sidecars, ``configs/*.yaml``).
- ``custom_nodes/``: about 30 packs, each with an ``__init__.py`` holding a ``NODE_CLASS_MAPPINGS`` dict
  literal (a couple of them disabled with a ``.disabled`` suffix), plus ComfyUI's own single-file module.
- ``user/default/workflows/**``: UI-format workflows of 20 KB to 500 KB. Their size comes from content
  (many pipelines of linked nodes, long prompts, notes, groups, ``extra.ds``); a third carry
  ``definitions.subgraphs`` (instances whose ``type`` is the subgraph id, loaders inside, promoted widgets,
  some nesting), and about 5% are saved as PNG images with the workflow in a ``tEXt`` chunk. About 80% of
  the model references exist in the tree; some workflows were saved on Windows and use ``\\`` separators;
  node types come from the core, from the generated packs and from packs that are not installed.

Everything is deterministic for a given seed, whatever the number of worker processes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import struct
import sys
import time
import uuid
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIN_WORKFLOW_BYTES = 20 * 1024
MAX_WORKFLOW_BYTES = 500 * 1024
PNG_SHARE = 0.05
SUBGRAPH_SHARE = 1 / 3
WINDOWS_SHARE = 0.15
INDENT_FACTOR = 2.0
EXISTING_SHARE = 0.80
PACK_COUNT = 30
DISABLED_PACKS = 2

# The word lists (bases, folder names, prompt phrases, notes, pack name parts) are data, kept in words.json
# beside this module so the code stays readable; one name per list, as the code below uses them.
_WORDS: dict[str, Any] = json.loads(Path(__file__).with_name("words.json").read_text(encoding="utf-8"))
BASES: list[str] = _WORDS["BASES"]
CATEGORIES: dict[str, list[str]] = _WORDS["CATEGORIES"]
LEVEL3: list[str] = _WORDS["LEVEL3"]
WORDS: list[str] = _WORDS["WORDS"]
TAGS: list[str] = _WORDS["TAGS"]
VERSIONS: list[str] = _WORDS["VERSIONS"]
PROMPT_SUBJECTS: list[str] = _WORDS["PROMPT_SUBJECTS"]
PROMPT_PHRASES: list[str] = _WORDS["PROMPT_PHRASES"]
NEGATIVE_PHRASES: list[str] = _WORDS["NEGATIVE_PHRASES"]
SAMPLERS: list[str] = _WORDS["SAMPLERS"]
SCHEDULERS: list[str] = _WORDS["SCHEDULERS"]
WF_FOLDERS: list[str] = _WORDS["WF_FOLDERS"]
WF_TOPICS: list[str] = _WORDS["WF_TOPICS"]
NOTE_LINES: list[str] = _WORDS["NOTE_LINES"]
PACK_VERBS: list[str] = _WORDS["PACK_VERBS"]
PACK_NOUNS: list[str] = _WORDS["PACK_NOUNS"]

# ----------------------------------------------------------------------------------------- model tree data

# folder -> (share of the model files, [(extension, weight), ...])
MODEL_FOLDERS: dict[str, tuple[float, list[tuple[str, float]]]] = {
    "checkpoints": (0.13, [(".safetensors", 0.9), (".ckpt", 0.1)]),
    "loras": (0.36, [(".safetensors", 0.97), (".pt", 0.03)]),
    "vae": (0.03, [(".safetensors", 0.85), (".pt", 0.1), (".ckpt", 0.05)]),
    "text_encoders": (0.03, [(".safetensors", 0.85), (".gguf", 0.15)]),
    "clip": (0.01, [(".safetensors", 1.0)]),
    "diffusion_models": (0.05, [(".safetensors", 0.7), (".gguf", 0.3)]),
    "unet": (0.01, [(".safetensors", 0.5), (".gguf", 0.5)]),
    "embeddings": (0.10, [(".safetensors", 0.55), (".pt", 0.45)]),
    "controlnet": (0.06, [(".safetensors", 0.6), (".pth", 0.4)]),
    "upscale_models": (0.04, [(".pth", 0.8), (".safetensors", 0.2)]),
    "clip_vision": (0.02, [(".safetensors", 1.0)]),
    "style_models": (0.01, [(".safetensors", 1.0)]),
    "hypernetworks": (0.01, [(".pt", 1.0)]),
    "gligen": (0.005, [(".safetensors", 1.0)]),
    "photomaker": (0.005, [(".bin", 1.0)]),
    "ipadapter": (0.02, [(".safetensors", 0.8), (".bin", 0.2)]),
    "ultralytics": (0.01, [(".pt", 1.0)]),
    "sams": (0.01, [(".pth", 1.0)]),
    "animatediff_models": (0.02, [(".ckpt", 0.5), (".safetensors", 0.5)]),
    "insightface": (0.01, [(".onnx", 1.0)]),
}
# core folders that ship with a put_*_here marker
MARKER_FOLDERS = (
    "checkpoints",
    "loras",
    "vae",
    "text_encoders",
    "clip",
    "diffusion_models",
    "unet",
    "embeddings",
    "controlnet",
    "upscale_models",
    "clip_vision",
    "style_models",
    "hypernetworks",
    "gligen",
    "photomaker",
    "configs",
    "diffusers",
    "vae_approx",
    "model_patches",
    "audio_encoders",
)


# ---------------------------------------------------------------------------------------- node type table
# type -> (link inputs [(name, type)], outputs [(name, type)], widget names, size)
NODE_SPECS: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]], list[str], tuple[float, float]]] = {
    "CheckpointLoaderSimple": (
        [],
        [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")],
        ["ckpt_name"],
        (315, 98),
    ),
    "LoraLoader": (
        [("model", "MODEL"), ("clip", "CLIP")],
        [("MODEL", "MODEL"), ("CLIP", "CLIP")],
        ["lora_name", "strength_model", "strength_clip"],
        (315, 126),
    ),
    "LoraLoaderModelOnly": (
        [("model", "MODEL")],
        [("MODEL", "MODEL")],
        ["lora_name", "strength_model"],
        (315, 82),
    ),
    "VAELoader": ([], [("VAE", "VAE")], ["vae_name"], (315, 58)),
    "UNETLoader": ([], [("MODEL", "MODEL")], ["unet_name", "weight_dtype"], (315, 82)),
    "CLIPLoader": ([], [("CLIP", "CLIP")], ["clip_name", "type", "device"], (315, 106)),
    "DualCLIPLoader": ([], [("CLIP", "CLIP")], ["clip_name1", "clip_name2", "type", "device"], (315, 130)),
    "ControlNetLoader": ([], [("CONTROL_NET", "CONTROL_NET")], ["control_net_name"], (315, 58)),
    "UpscaleModelLoader": ([], [("UPSCALE_MODEL", "UPSCALE_MODEL")], ["model_name"], (315, 58)),
    "CLIPVisionLoader": ([], [("CLIP_VISION", "CLIP_VISION")], ["clip_name"], (315, 58)),
    "CLIPVisionEncode": (
        [("clip_vision", "CLIP_VISION"), ("image", "IMAGE")],
        [("CLIP_VISION_OUTPUT", "CLIP_VISION_OUTPUT")],
        ["crop"],
        (253, 78),
    ),
    "CLIPTextEncode": ([("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")], ["text"], (425, 180)),
    "ConditioningZeroOut": (
        [("conditioning", "CONDITIONING")],
        [("CONDITIONING", "CONDITIONING")],
        [],
        (197, 26),
    ),
    "FluxGuidance": (
        [("conditioning", "CONDITIONING")],
        [("CONDITIONING", "CONDITIONING")],
        ["guidance"],
        (317, 58),
    ),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")], ["width", "height", "batch_size"], (315, 106)),
    "EmptySD3LatentImage": ([], [("LATENT", "LATENT")], ["width", "height", "batch_size"], (315, 106)),
    "KSampler": (
        [
            ("model", "MODEL"),
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("latent_image", "LATENT"),
        ],
        [("LATENT", "LATENT")],
        ["seed", "control_after_generate", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
        (315, 262),
    ),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")], [], (210, 46)),
    "VAEEncode": ([("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")], [], (210, 46)),
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")], ["image", "upload"], (315, 314)),
    "Canny": ([("image", "IMAGE")], [("IMAGE", "IMAGE")], ["low_threshold", "high_threshold"], (315, 82)),
    "ControlNetApplyAdvanced": (
        [
            ("positive", "CONDITIONING"),
            ("negative", "CONDITIONING"),
            ("control_net", "CONTROL_NET"),
            ("image", "IMAGE"),
            ("vae", "VAE"),
        ],
        [("positive", "CONDITIONING"), ("negative", "CONDITIONING")],
        ["strength", "start_percent", "end_percent"],
        (315, 186),
    ),
    "ImageUpscaleWithModel": (
        [("upscale_model", "UPSCALE_MODEL"), ("image", "IMAGE")],
        [("IMAGE", "IMAGE")],
        [],
        (241, 46),
    ),
    "ImageScaleBy": ([("image", "IMAGE")], [("IMAGE", "IMAGE")], ["upscale_method", "scale_by"], (315, 82)),
    "SaveImage": ([("images", "IMAGE")], [], ["filename_prefix"], (520, 580)),
    "PreviewImage": ([("images", "IMAGE")], [], [], (420, 460)),
    "Note": ([], [], ["text"], (400, 200)),
    "MarkdownNote": ([], [], ["text"], (520, 360)),
    "Reroute": ([("", "*")], [("", "*")], [], (75, 26)),
}
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
NOT_IN_PROMPT_WIDGETS = {"control_after_generate", "upload"}
# loader type -> (widget names holding a model, folder)
LOADER_FOLDER: dict[str, tuple[tuple[str, ...], str]] = {
    "CheckpointLoaderSimple": (("ckpt_name",), "checkpoints"),
    "LoraLoader": (("lora_name",), "loras"),
    "LoraLoaderModelOnly": (("lora_name",), "loras"),
    "VAELoader": (("vae_name",), "vae"),
    "UNETLoader": (("unet_name",), "diffusion_models"),
    "CLIPLoader": (("clip_name",), "text_encoders"),
    "DualCLIPLoader": (("clip_name1", "clip_name2"), "text_encoders"),
    "ControlNetLoader": (("control_net_name",), "controlnet"),
    "UpscaleModelLoader": (("model_name",), "upscale_models"),
    "CLIPVisionLoader": (("clip_name",), "clip_vision"),
}
# folders a loader may read, with the legacy folder names a real install still has
FOLDER_DIRS = {"diffusion_models": ("diffusion_models", "unet"), "text_encoders": ("text_encoders", "clip")}

# node types from packs that are not installed: (type, widget names, model folder of the first widget or None)
UNKNOWN_TYPES: list[tuple[str, list[str], str | None]] = [
    (
        "UltimateSDUpscale",
        [
            "upscale_by",
            "seed",
            "control_after_generate",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "denoise",
            "mode_type",
            "tile_width",
            "tile_height",
            "mask_blur",
            "tile_padding",
            "seam_fix_mode",
            "seam_fix_denoise",
            "seam_fix_width",
            "seam_fix_mask_blur",
            "seam_fix_padding",
            "force_uniform_tiles",
            "tiled_decode",
        ],
        None,
    ),
    ("UltralyticsDetectorProvider", ["model_name"], "ultralytics"),
    ("SAMLoader", ["model_name", "device_mode"], "sams"),
    ("IPAdapterModelLoader", ["ipadapter_file"], "ipadapter"),
    ("ADE_LoadAnimateDiffModel", ["model_name"], "animatediff_models"),
    (
        "ReActorFaceSwap",
        [
            "enabled",
            "swap_model",
            "facedetection",
            "face_restore_model",
            "face_restore_visibility",
            "codeformer_weight",
            "detect_gender_input",
            "detect_gender_source",
            "input_faces_index",
            "source_faces_index",
            "console_log_level",
        ],
        None,
    ),
    (
        "VHS_VideoCombine",
        ["frame_rate", "loop_count", "filename_prefix", "format", "pingpong", "save_output"],
        None,
    ),
    ("Image Comparer (rgthree)", ["comparer_mode"], None),
    (
        "CR Upscale Image",
        [
            "upscale_model",
            "mode",
            "rescale_factor",
            "resize_width",
            "resampling_method",
            "supersample",
            "rounding_modulus",
        ],
        "upscale_models",
    ),
    ("easy imageColorMatch", ["method", "image_output", "save_prefix"], None),
    ("FaceRestoreModelLoader", ["model_name"], "facerestore_models"),
    ("Florence2ModelLoader", ["model", "precision", "attention"], None),
]


# ------------------------------------------------------------------------------------------------ helpers


def _weighted(rng: random.Random, pairs: list[tuple[T, float]]) -> T:
    """Returns one value of ``pairs`` chosen with its weight."""
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def _model_stem(rng: random.Random) -> str:
    """Returns a made-up but plausible model file stem such as ``emeraldDream_XL_v9``."""
    words = rng.sample(WORDS, rng.choice((1, 2, 2, 3)))
    style = rng.random()
    if style < 0.4:
        stem = words[0] + "".join(w.capitalize() for w in words[1:])
    elif style < 0.7:
        stem = "_".join(words)
    else:
        stem = "-".join(words)
    if rng.random() < 0.6:
        stem += rng.choice(("", "_", "-")) + rng.choice(TAGS)
    if rng.random() < 0.75:
        version = rng.choice(VERSIONS)
        stem += version if version[0] in "_-" else rng.choice(("_", "-", "")) + version
    return stem


def _subfolder(rng: random.Random, folder: str) -> list[str]:
    """Returns 0 to 3 nested subfolder names for a model file in ``folder``."""
    depth = _weighted(rng, [(0, 0.3), (1, 0.35), (2, 0.25), (3, 0.10)])
    parts: list[str] = []
    if depth >= 1:
        parts.append(rng.choice(BASES))
    if depth >= 2:
        parts.append(rng.choice(CATEGORIES.get(folder, ["misc", "extra", "community", "official"])))
    if depth >= 3:
        parts.append(rng.choice(LEVEL3))
    return parts


@dataclass
class ModelTree:
    """The model tree to write: model files as paths relative to their model folder (``/`` separators) per
    folder, and every other file (markers, sidecars, configs) as (path relative to ``models``, content)."""

    files: dict[str, list[str]] = field(default_factory=dict)
    others: list[tuple[str, str]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """The number of model files."""
        return sum(len(rels) for rels in self.files.values())


def _plan_models(models: int, rng: random.Random) -> ModelTree:
    """Chooses the names of ``models`` model files and of the files around them, without writing anything."""
    tree = ModelTree()
    names = list(MODEL_FOLDERS)
    shares = [MODEL_FOLDERS[n][0] for n in names]
    total_share = sum(shares)
    counts = [int(models * s / total_share) for s in shares]
    counts[names.index("loras")] += models - sum(counts)
    for folder, count in zip(names, counts, strict=True):
        exts = MODEL_FOLDERS[folder][1]
        seen: set[str] = set()
        rels: list[str] = []
        while len(rels) < count:
            rel = "/".join([*_subfolder(rng, folder), _model_stem(rng) + _weighted(rng, exts)])
            if rel.lower() in seen:
                continue
            seen.add(rel.lower())
            rels.append(rel)
            if folder in ("loras", "checkpoints") and rng.random() < 0.12:
                stem = f"{folder}/{rel.rsplit('.', 1)[0]}"
                tree.others.append((f"{stem}.preview.png", ""))
                tree.others.append((f"{stem}.civitai.info", f'{{"id": {rng.randrange(10**6)}}}\n'))
        tree.files[folder] = rels
    tree.others += [(f"{folder}/put_{folder}_here", "") for folder in MARKER_FOLDERS]
    config = "model:\n  base_learning_rate: 1.0e-04\n  target: ldm.models.LatentDiffusion\n"
    for name in ("v1-inference.yaml", "v2-inference-v.yaml", "sd_xl_base.yaml", "anything_v3.yaml"):
        tree.others.append((f"configs/{name}", config))
    return tree


# An 8-byte little-endian header length (2) and the header "{}": the smallest whole safetensors file.
EMPTY_SAFETENSORS = "\x02\x00\x00\x00\x00\x00\x00\x00{}"


def _write_models(root: Path, tree: ModelTree) -> None:
    """Writes the planned tree under ``root/models``: tiny model files (a ``.safetensors`` file holds an empty
    but valid header, so the truncation check sees a whole file; others are empty), then the other files."""
    base = root / "models"
    made: set[Path] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    paths = [base / folder / rel for folder, rels in tree.files.items() for rel in rels]
    paths += [base / rel for rel, _ in tree.others]
    contents = [
        EMPTY_SAFETENSORS if p.suffix in (".safetensors", ".sft") else ""
        for p in paths[: len(paths) - len(tree.others)]
    ]
    contents += [text for _, text in tree.others]
    for path, text in zip(paths, contents, strict=True):
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        fd = os.open(path, flags, 0o644)
        try:
            if text:
                os.write(fd, text.encode())
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------ custom node packs


@dataclass
class Pack:
    """A generated custom node pack: folder name, registry id and the node types it registers."""

    folder: str
    cnr_id: str
    version: str
    nodes: dict[str, list[str]]  # node type -> widget names
    disabled: bool = False


def _make_packs(rng: random.Random) -> list[Pack]:
    """Returns ``PACK_COUNT`` packs with unique node type names (5 to 40 each)."""
    packs: list[Pack] = []
    used: set[str] = set()
    for i in range(PACK_COUNT):
        a, b = rng.sample(WORDS, 2)
        style = i % 4
        if style == 0:
            folder = f"ComfyUI-{a.capitalize()}{b.capitalize()}"
        elif style == 1:
            folder = f"comfyui_{a}_{b}"
        elif style == 2:
            folder = f"{a.capitalize()}-{b.capitalize()}-Nodes"
        else:
            folder = f"ComfyUI_{a.capitalize()}Suite"
        tag = a[:2].upper() + b[:1].upper()
        nodes: dict[str, list[str]] = {}
        for _ in range(rng.randint(5, 40)):
            for _attempt in range(20):
                verb, noun = rng.choice(PACK_VERBS), rng.choice(PACK_NOUNS)
                naming = rng.random()
                if naming < 0.5:
                    name = f"{tag}_{verb}{noun}"
                elif naming < 0.8:
                    name = f"{verb} {noun} ({a.capitalize()})"
                else:
                    name = f"{verb}{noun}{tag}"
                if name not in used:
                    break
            else:
                continue
            used.add(name)
            nodes[name] = rng.sample(
                [
                    "mode",
                    "strength",
                    "threshold",
                    "method",
                    "scale",
                    "blend_factor",
                    "invert",
                    "channel",
                    "padding",
                    "feather",
                    "seed",
                    "text",
                    "index",
                    "width",
                    "height",
                    "quality",
                    "device",
                ],
                rng.randint(1, 6),
            )
        packs.append(
            Pack(
                folder=folder,
                cnr_id=folder.lower().replace("_", "-"),
                version=f"{rng.randint(0, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 20)}",
                nodes=nodes,
                disabled=i >= PACK_COUNT - DISABLED_PACKS,
            )
        )
    return packs


def _class_name(node_type: str) -> str:
    """Returns a Python class name derived from a node type name."""
    cleaned = "".join(ch if ch.isalnum() else " " for ch in node_type)
    return "".join(w[:1].upper() + w[1:] for w in cleaned.split()) or "Node"


def _write_packs(root: Path, packs: list[Pack]) -> int:
    """Writes every pack under ``root/custom_nodes``; returns the number of node types registered."""
    base = root / "custom_nodes"
    base.mkdir(parents=True, exist_ok=True)
    total = 0
    for pack in packs:
        folder = base / (pack.folder + (".disabled" if pack.disabled else ""))
        folder.mkdir(parents=True, exist_ok=True)
        classes = {name: _class_name(name) for name in pack.nodes}
        lines = [f'"""Node classes of {pack.folder}."""\n\n']
        for name, cls in classes.items():
            widgets = ", ".join(f'"{w}": ("STRING", {{}})' for w in pack.nodes[name])
            lines.append(
                f"class {cls}:\n"
                f'    CATEGORY = "{pack.folder}"\n'
                '    RETURN_TYPES = ("IMAGE",)\n'
                '    FUNCTION = "run"\n\n'
                "    @classmethod\n"
                "    def INPUT_TYPES(cls):\n"
                f'        return {{"required": {{"image": ("IMAGE",), {widgets}}}}}\n\n'
                "    def run(self, image, **kwargs):\n"
                "        return (image,)\n\n\n"
            )
        (folder / "nodes.py").write_text("".join(lines).rstrip() + "\n")
        mapping = "".join(f'    "{name}": {cls},\n' for name, cls in classes.items())
        display = "".join(f'    "{name}": "{name.replace("_", " ")}",\n' for name in classes)
        (folder / "__init__.py").write_text(
            f'"""{pack.folder}: custom nodes for ComfyUI."""\n\n'
            "from .nodes import (\n" + "".join(f"    {c},\n" for c in sorted(set(classes.values()))) + ")\n\n"
            f"NODE_CLASS_MAPPINGS = {{\n{mapping}}}\n\n"
            f"NODE_DISPLAY_NAME_MAPPINGS = {{\n{display}}}\n\n"
            'WEB_DIRECTORY = "./js"\n'
            '__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]\n'
        )
        (folder / "pyproject.toml").write_text(
            f'[project]\nname = "{pack.cnr_id}"\nversion = "{pack.version}"\n'
            f'description = "Nodes for ComfyUI"\nlicense = {{ text = "GPL-3.0" }}\n\n'
            f'[tool.comfy]\nPublisherId = "{pack.cnr_id.split("-")[-1]}"\nDisplayName = "{pack.folder}"\n'
        )
        (folder / "requirements.txt").write_text("numpy\nopencv-python-headless\n")
        (folder / "js").mkdir(exist_ok=True)
        (folder / "js" / "widgets.js").write_text('import { app } from "../../scripts/app.js";\n')
        total += len(pack.nodes)
    (base / "websocket_image_save.py").write_text(
        'class SaveImageWebsocket:\n    RETURN_TYPES = ()\n    FUNCTION = "save_images"\n\n\n'
        'NODE_CLASS_MAPPINGS = {\n    "SaveImageWebsocket": SaveImageWebsocket,\n}\n'
    )
    (base / "example_node.py.example").write_text("# Example custom node (not loaded: wrong extension)\n")
    return total


# ------------------------------------------------------------------------------------------------ workflows


@dataclass
class Context:
    """What a workflow builder needs to know about the install (shared, read-only, with the workers)."""

    models: dict[str, list[str]]
    favourites: dict[str, list[str]]
    pack_nodes: list[tuple[str, list[str], str, str]]  # (type, widgets, cnr_id, version)


def _widget_type(name: str) -> str:
    """Returns the input type the frontend records for a widget input of this name."""
    if name in ("text", "filename_prefix", "image"):
        return "STRING" if name != "image" else "COMBO"
    if name in (
        "cfg",
        "denoise",
        "guidance",
        "scale_by",
        "strength",
        "start_percent",
        "end_percent",
        "strength_model",
        "strength_clip",
        "low_threshold",
        "high_threshold",
    ):
        return "FLOAT"
    if name.endswith(("name", "name1", "name2", "_method", "method", "type", "device", "mode", "dtype")) or name in (
        "sampler_name",
        "scheduler",
        "crop",
    ):
        return "COMBO"
    return "INT"


class Counter:
    """Hands out node or link ids that are unique across the root graph and all its subgraphs, as the
    frontend does."""

    def __init__(self) -> None:
        self.last = 0

    def __call__(self) -> int:
        self.last += 1
        return self.last


class Graph:
    """A LiteGraph graph (the root workflow or a subgraph) built node by node with consistent links."""

    def __init__(self, modern: bool, node_ids: Counter) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []
        self.by_id: dict[int, dict[str, Any]] = {}
        self.node_ids = node_ids
        self.modern = modern
        self.groups: list[dict[str, Any]] = []

    def add(
        self,
        type_: str,
        pos: tuple[float, float],
        widgets: list[Any] | dict[str, Any] | None,
        spec: tuple[list[tuple[str, str]], list[tuple[str, str]], list[str], tuple[float, float]] | None = None,
        props: dict[str, Any] | None = None,
        mode: int = 0,
        title: str | None = None,
    ) -> dict[str, Any]:
        """Adds a node and returns it; ``spec`` defaults to the core table entry for ``type_``."""
        link_inputs, outputs, widget_names, size = spec or NODE_SPECS[type_]
        inputs: list[dict[str, Any]] = []
        for name, typ in link_inputs:
            entry: dict[str, Any] = {"name": name, "type": typ, "link": None}
            if self.modern and name:
                entry = {"localized_name": name, **entry}
            inputs.append(entry)
        if self.modern and type_ not in FRONTEND_ONLY:
            for w in widget_names:
                if w in NOT_IN_PROMPT_WIDGETS:
                    continue
                inputs.append(
                    {
                        "localized_name": w,
                        "name": w,
                        "type": _widget_type(w),
                        "widget": {"name": w},
                        "link": None,
                    }
                )
        node: dict[str, Any] = {
            "id": self.node_ids(),
            "type": type_,
            "pos": [round(pos[0], 3), round(pos[1], 3)],
            "size": [size[0], size[1]],
            "flags": {},
            "order": len(self.nodes),
            "mode": mode,
            "inputs": inputs,
            "outputs": [
                ({"localized_name": n} if self.modern and n else {}) | {"name": n, "type": t, "links": []}
                for n, t in outputs
            ],
        }
        if title:
            node["title"] = title
        properties: dict[str, Any] = {}
        if type_ not in FRONTEND_ONLY:
            properties["Node name for S&R"] = type_
        if type_ in NODE_SPECS and type_ not in FRONTEND_ONLY:
            properties["cnr_id"] = "comfy-core"
            properties["ver"] = f"0.3.{40 + node['id'] % 30}"
        if props:
            properties.update(props)
        node["properties"] = properties
        if widgets is not None:
            node["widgets_values"] = widgets
        self.nodes.append(node)
        self.by_id[node["id"]] = node
        return node

    def link(self, src: dict[str, Any], src_slot: int, dst: dict[str, Any], dst_slot: int, lid: int) -> None:
        """Links output ``src_slot`` of ``src`` to input ``dst_slot`` of ``dst`` with link id ``lid``."""
        out = src["outputs"][src_slot]
        out["links"].append(lid)
        out.setdefault("slot_index", src_slot)
        dst["inputs"][dst_slot]["link"] = lid
        self.links.append([lid, src["id"], src_slot, dst["id"], dst_slot, out["type"]])


def _prompt(rng: random.Random, ctx: Context, negative: bool) -> str:
    """Returns a long positive or negative prompt, sometimes with ``embedding:`` references."""
    if negative:
        parts = rng.sample(NEGATIVE_PHRASES, rng.randint(6, 22))
    else:
        parts = [rng.choice(PROMPT_SUBJECTS)]
        parts += rng.choices(PROMPT_PHRASES, k=rng.randint(8, 60))
        if rng.random() < 0.3:
            parts.insert(1, rng.choice(PROMPT_SUBJECTS).replace("a ", "with ", 1))
    if rng.random() < (0.5 if negative else 0.08):
        emb = _pick_model(rng, ctx, "embeddings", windows=False).rsplit(".", 1)[0]
        token = f"embedding:{emb}"
        if rng.random() < 0.3:
            token = f"({token}:{rng.choice((0.8, 1.0, 1.1, 1.2))})"
        parts.insert(0 if negative else len(parts), token)
    text = ", ".join(parts)
    if rng.random() < 0.25:
        text = text.replace(", ", ",\n", rng.randint(1, 4))
    return text


def _missing_name(rng: random.Random, ctx: Context, folder: str) -> str:
    """Returns a model reference that does not exist: a made-up file, or an existing file moved elsewhere."""
    files = ctx.models.get(folder) or ctx.models["loras"]
    if rng.random() < 0.3:
        existing = rng.choice(files).split("/")[-1]
        return f"{rng.choice(['old', 'downloads', 'SDXL', 'Flux', 'misc'])}/{existing}"
    ext = ".pth" if folder in ("upscale_models",) else ".safetensors"
    sub = _subfolder(rng, folder)
    return "/".join([*sub[:1], f"{_model_stem(rng)}_{rng.choice(['dl', 'new', 'alt', 'x'])}{ext}"])


def _pick_model(rng: random.Random, ctx: Context, folder: str, windows: bool) -> str:
    """Returns a model reference for ``folder``: ~80% existing (popular ones more often), else missing."""
    folders = FOLDER_DIRS.get(folder, (folder,))
    folder = folders[0] if len(folders) == 1 or rng.random() < 0.8 else folders[1]
    if rng.random() < EXISTING_SHARE:
        pool = ctx.favourites[folder] if rng.random() < 0.6 else ctx.models[folder]
        ref = rng.choice(pool)
    else:
        ref = _missing_name(rng, ctx, folder)
    return ref.replace("/", "\\") if windows else ref


def _model_decl(ref: str, folder: str) -> dict[str, str]:
    """Returns a ``properties.models`` entry declaring where ``ref`` can be downloaded from."""
    name = ref.replace("\\", "/").split("/")[-1]
    return {
        "name": name,
        "url": f"https://huggingface.co/Comfy-Org/{folder}/resolve/main/{name}",
        "directory": folder,
        # Templates declare a sha256 per file: the verify stage hashes every installed one it is declared for.
        "hash": hashlib.sha256(name.encode()).hexdigest(),
        "hash_type": "SHA256",
    }


@dataclass
class Build:
    """State of one workflow being built."""

    rng: random.Random
    ctx: Context
    windows: bool
    ids: Counter
    node_ids: Counter
    subgraphs: list[dict[str, Any]] = field(default_factory=list)
    loader_subgraph: dict[str, Any] | None = None


def _loader(
    b: Build, g: Graph, type_: str, pos: tuple[float, float], extra: list[Any] | None = None, mode: int = 0
) -> dict[str, Any]:
    """Adds a core loader node with model references (sometimes declared in ``properties.models``)."""
    rng = b.rng
    widget_names, folder = LOADER_FOLDER[type_]
    refs = [_pick_model(rng, b.ctx, folder, b.windows) for _ in widget_names]
    props: dict[str, Any] = {}
    if rng.random() < 0.12:
        props["models"] = [_model_decl(r, folder) for r in refs]
    return g.add(type_, pos, [*refs, *(extra or [])], props=props, mode=mode)


def _model_block(
    b: Build, g: Graph, x: float, y: float
) -> tuple[tuple[dict[str, Any], int], tuple[dict[str, Any], int], tuple[dict[str, Any], int], str]:
    """Adds the loaders of one pipeline; returns the (node, slot) giving MODEL, CLIP and VAE, and the family
    (``sd``, ``flux`` or ``single``)."""
    rng = b.rng
    family = _weighted(rng, [("sd", 0.6), ("flux", 0.25), ("single", 0.15)])
    if family == "sd":
        ckpt = _loader(b, g, "CheckpointLoaderSimple", (x, y))
        model, clip, vae = (ckpt, 0), (ckpt, 1), (ckpt, 2)
        if rng.random() < 0.4:
            vae = (_loader(b, g, "VAELoader", (x, y + 150)), 0)
    else:
        unet = _loader(b, g, "UNETLoader", (x, y), [rng.choice(["default", "fp8_e4m3fn", "fp8_e5m2"])])
        if family == "flux":
            cl = _loader(b, g, "DualCLIPLoader", (x, y + 130), ["flux", "default"])
        else:
            cl = _loader(b, g, "CLIPLoader", (x, y + 130), [rng.choice(["wan", "sd3", "qwen_image"]), "default"])
        vl = _loader(b, g, "VAELoader", (x, y + 290))
        model, clip, vae = (unet, 0), (cl, 0), (vl, 0)
    n_loras = _weighted(rng, [(0, 0.3), (1, 0.3), (2, 0.2), (4, 0.15), (7, 0.05)])
    for k in range(n_loras):
        mode = 4 if rng.random() < 0.08 else 0
        if family == "sd":
            lora = _loader(
                b,
                g,
                "LoraLoader",
                (x + 360, y + 140 * k),
                [round(rng.uniform(0.3, 1.2), 2), round(rng.uniform(0.3, 1.2), 2)],
                mode=mode,
            )
            g.link(model[0], model[1], lora, 0, b.ids())
            g.link(clip[0], clip[1], lora, 1, b.ids())
            model, clip = (lora, 0), (lora, 1)
        else:
            lora = _loader(
                b,
                g,
                "LoraLoaderModelOnly",
                (x + 360, y + 110 * k),
                [round(rng.uniform(0.3, 1.2), 2)],
                mode=mode,
            )
            g.link(model[0], model[1], lora, 0, b.ids())
            model = (lora, 0)
    return model, clip, vae, family


def _uuid(rng: random.Random) -> str:
    """Returns a random (seeded) version 4 UUID string."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


Endpoint = tuple[dict[str, Any], int]


def _definition(
    b: Build,
    sg: Graph,
    name: str,
    inputs: list[tuple[str, str, list[Endpoint]]],
    outputs: list[tuple[str, str, Endpoint]],
) -> dict[str, Any]:
    """Turns the graph ``sg`` into a subgraph definition, registers it in the workflow and returns it.

    ``inputs`` are (name, type, inner (node, input slot) targets), linked from the input node (id -10);
    ``outputs`` are (name, type, inner (node, output slot) source), linked to the output node (id -20).
    """
    rng = b.rng
    links: list[dict[str, Any]] = []
    io_in: list[dict[str, Any]] = []
    for k, (in_name, typ, targets) in enumerate(inputs):
        ids = []
        for node, slot in targets:
            lid = b.ids()
            node["inputs"][slot]["link"] = lid
            links.append(
                {
                    "id": lid,
                    "origin_id": -10,
                    "origin_slot": k,
                    "target_id": node["id"],
                    "target_slot": slot,
                    "type": typ,
                }
            )
            ids.append(lid)
        io_in.append(
            {
                "id": _uuid(rng),
                "name": in_name,
                "type": typ,
                "linkIds": ids,
                "localized_name": in_name,
                "pos": [-520, 20 + 20 * k],
            }
        )
    io_out: list[dict[str, Any]] = []
    for k, (out_name, typ, (node, slot)) in enumerate(outputs):
        lid = b.ids()
        node["outputs"][slot]["links"].append(lid)
        links.append(
            {
                "id": lid,
                "origin_id": node["id"],
                "origin_slot": slot,
                "target_id": -20,
                "target_slot": k,
                "type": typ,
            }
        )
        io_out.append(
            {
                "id": _uuid(rng),
                "name": out_name,
                "type": typ,
                "linkIds": [lid],
                "localized_name": out_name,
                "pos": [1200, 20 + 20 * k],
            }
        )
    links += [
        {"id": lid, "origin_id": o, "origin_slot": os_, "target_id": t, "target_slot": ts, "type": ty}
        for lid, o, os_, t, ts, ty in sg.links
    ]
    definition = {
        "id": _uuid(rng),
        "version": 1,
        "state": {
            "lastGroupId": 0,
            "lastNodeId": b.node_ids.last,
            "lastLinkId": b.ids.last,
            "lastRerouteId": 0,
        },
        "revision": 0,
        "config": {},
        "name": name,
        "inputNode": {"id": -10, "bounding": [-560, 0, 120, 40 + 20 * len(inputs)]},
        "outputNode": {"id": -20, "bounding": [1180, 0, 120, 40 + 20 * len(outputs)]},
        "inputs": io_in,
        "outputs": io_out,
        "widgets": [],
        "nodes": sg.nodes,
        "groups": sg.groups,
        "links": links,
        "extra": {"workflowRendererVersion": "LG"},
    }
    b.subgraphs.append(definition)
    return definition


def _loader_subgraph(b: Build) -> dict[str, Any]:
    """Returns the workflow's "Load models" subgraph (created on first use): loaders and LoRAs inside,
    MODEL / CLIP / VAE out, the first loader's model name promoted as a widget input."""
    if b.loader_subgraph is None:
        sg = Graph(modern=True, node_ids=b.node_ids)
        model, clip, vae, family = _model_block(b, sg, -400, 0)
        first = sg.nodes[0]
        widget = LOADER_FOLDER[first["type"]][0][0]
        slot = next(i for i, inp in enumerate(first["inputs"]) if inp["name"] == widget)
        b.loader_subgraph = _definition(
            b,
            sg,
            f"Load models ({family.upper()})",
            [(widget, "COMBO", [(first, slot)])],
            [("MODEL", "MODEL", model), ("CLIP", "CLIP", clip), ("VAE", "VAE", vae)],
        )
    return b.loader_subgraph


def _upscale_subgraph(b: Build) -> dict[str, Any]:
    """Creates an "Upscale" subgraph (IMAGE in, IMAGE out, an UpscaleModelLoader inside) and returns it."""
    sg = Graph(modern=True, node_ids=b.node_ids)
    up = _loader(b, sg, "UpscaleModelLoader", (0, 0))
    apply = sg.add("ImageUpscaleWithModel", (360, 0), [])
    sg.link(up, 0, apply, 0, b.ids())
    scale = sg.add("ImageScaleBy", (640, 0), ["lanczos", b.rng.choice([0.5, 0.75])])
    sg.link(apply, 0, scale, 0, b.ids())
    return _definition(
        b, sg, "Upscale 4x then shrink", [("image", "IMAGE", [(apply, 1)])], [("IMAGE", "IMAGE", (scale, 0))]
    )


def _postprocess_subgraph(b: Build) -> dict[str, Any]:
    """Creates a "Post-process" subgraph that nests an instance of a new "Upscale" subgraph followed by a
    custom node, and returns it."""
    inner = _upscale_subgraph(b)
    sg = Graph(modern=True, node_ids=b.node_ids)
    inst = _instance(b, sg, inner, (0, 0))
    image = _custom_node(b, sg, (inst, 0), (480, 0))
    if image[0] is inst:  # the custom node was a model provider: add an image filter so the chain continues
        sharpen = sg.add("ImageScaleBy", (800, 0), ["bicubic", 1.0])
        sg.link(inst, 0, sharpen, 0, b.ids())
        image = (sharpen, 0)
    return _definition(b, sg, "Post-process", [("image", "IMAGE", [(inst, 0)])], [("IMAGE", "IMAGE", image)])


def _instance(b: Build, g: Graph, definition: dict[str, Any], pos: tuple[float, float]) -> dict[str, Any]:
    """Adds an instance of a subgraph definition to ``g`` (type = the subgraph id), sometimes overriding the
    promoted loader widget with another model."""
    rng = b.rng
    link_inputs = [(i["name"], i["type"]) for i in definition["inputs"] if i["type"] != "COMBO"]
    promoted = [i["name"] for i in definition["inputs"] if i["type"] == "COMBO"]
    outputs = [(o["name"], o["type"]) for o in definition["outputs"]]
    spec = (link_inputs, outputs, [], (400, 240))
    node = g.add(definition["id"], pos, [], spec=spec)
    del node["properties"]["Node name for S&R"]
    node["properties"].update({"cnr_id": "comfy-core", "ver": "0.3.68"})
    if promoted:
        inner = definition["nodes"][0]
        folder = LOADER_FOLDER[inner["type"]][1]
        value = inner["widgets_values"][0]
        if rng.random() < 0.4:
            value = _pick_model(rng, b.ctx, folder, b.windows)
        if rng.random() < 0.5:
            node["inputs"].append({"name": promoted[0], "type": "COMBO", "widget": {"name": promoted[0]}, "link": None})
            node["widgets_values"] = [value]
        else:
            node["properties"]["proxyWidgets"] = [[str(inner["id"]), promoted[0]]]
            node["widgets_values"] = [value]
    return node


def _pipeline(b: Build, g: Graph, x: float, y: float, use_subgraphs: bool, first: bool = False) -> None:
    """Adds one generation pipeline (loaders, LoRAs, prompts, sampler, decode, post-processing, save)."""
    rng, ctx = b.rng, b.ctx
    ids = b.ids
    n0 = len(g.nodes)
    if use_subgraphs and (first or rng.random() < 0.6):
        inst = _instance(b, g, _loader_subgraph(b), (x, y))
        model, clip, vae, family = (inst, 0), (inst, 1), (inst, 2), "sd"
    else:
        model, clip, vae, family = _model_block(b, g, x, y)
    px = x + 900
    pos_node = g.add(
        "CLIPTextEncode",
        (px, y),
        [_prompt(rng, ctx, negative=False)],
        title="Positive" if rng.random() < 0.3 else None,
    )
    g.link(clip[0], clip[1], pos_node, 0, ids())
    positive = (pos_node, 0)
    if family == "sd":
        neg_node = g.add("CLIPTextEncode", (px, y + 230), [_prompt(rng, ctx, negative=True)])
        g.link(clip[0], clip[1], neg_node, 0, ids())
        negative = (neg_node, 0)
    else:
        guid = g.add("FluxGuidance", (px + 450, y), [rng.choice([2.5, 3.5, 4.0])])
        g.link(pos_node, 0, guid, 0, ids())
        positive = (guid, 0)
        zero = g.add("ConditioningZeroOut", (px + 450, y + 120), [])
        g.link(pos_node, 0, zero, 0, ids())
        negative = (zero, 0)
    if rng.random() < 0.3:
        img = g.add("LoadImage", (px - 400, y + 480), [f"reference_{rng.randrange(10**4):04d}.png", "image"])
        canny = g.add("Canny", (px, y + 480), [0.4, 0.8])
        g.link(img, 0, canny, 0, ids())
        cn = _loader(b, g, "ControlNetLoader", (px, y + 600))
        apply = g.add(
            "ControlNetApplyAdvanced",
            (px + 450, y + 300),
            [round(rng.uniform(0.4, 1.0), 2), 0, round(rng.uniform(0.6, 1.0), 2)],
        )
        g.link(positive[0], positive[1], apply, 0, ids())
        g.link(negative[0], negative[1], apply, 1, ids())
        g.link(cn, 0, apply, 2, ids())
        g.link(canny, 0, apply, 3, ids())
        g.link(vae[0], vae[1], apply, 4, ids())
        positive, negative = (apply, 0), (apply, 1)
    if family != "sd" and rng.random() < 0.12:  # a reference image through CLIP vision (redux style)
        cv = _loader(b, g, "CLIPVisionLoader", (px - 400, y + 900))
        ref = g.add("LoadImage", (px - 400, y + 1000), [f"style_{rng.randrange(10**4):04d}.jpg", "image"])
        enc = g.add("CLIPVisionEncode", (px, y + 900), ["center"])
        g.link(cv, 0, enc, 0, ids())
        g.link(ref, 0, enc, 1, ids())
    latent_type = "EmptyLatentImage" if family == "sd" else "EmptySD3LatentImage"
    w, h = rng.choice([(1024, 1024), (832, 1216), (1216, 832), (512, 768), (768, 512), (1344, 768)])
    latent = g.add(latent_type, (px, y + 760), [w, h, rng.choice([1, 1, 1, 2, 4])])
    sx = px + 900
    ks = g.add(
        "KSampler",
        (sx, y),
        [
            rng.randrange(2**50),
            rng.choice(["randomize", "fixed", "increment"]),
            rng.randint(4, 60),
            round(rng.choice([1, 1.5, 3.5, 4.5, 5, 6, 7, 7.5, 8]), 1),
            rng.choice(SAMPLERS),
            rng.choice(SCHEDULERS),
            1,
        ],
    )
    for slot, src in enumerate((model, positive, negative, (latent, 0))):
        g.link(src[0], src[1], ks, slot, ids())
    dec = g.add("VAEDecode", (sx + 360, y), [])
    g.link(ks, 0, dec, 0, ids())
    g.link(vae[0], vae[1], dec, 1, ids())
    image = (dec, 0)
    if rng.random() < 0.35:  # hires fix: scale, encode, second sampler
        scale = g.add("ImageScaleBy", (sx + 360, y + 120), ["lanczos", 1.5])
        g.link(image[0], image[1], scale, 0, ids())
        enc = g.add("VAEEncode", (sx + 360, y + 250), [])
        g.link(scale, 0, enc, 0, ids())
        g.link(vae[0], vae[1], enc, 1, ids())
        ks2 = g.add(
            "KSampler",
            (sx + 640, y + 120),
            [
                rng.randrange(2**50),
                "fixed",
                rng.randint(10, 30),
                5,
                rng.choice(SAMPLERS),
                "karras",
                round(rng.uniform(0.25, 0.5), 2),
            ],
            title="Hires pass",
        )
        for slot, src in enumerate((model, positive, negative, (enc, 0))):
            g.link(src[0], src[1], ks2, slot, ids())
        dec2 = g.add("VAEDecode", (sx + 1000, y + 120), [])
        g.link(ks2, 0, dec2, 0, ids())
        g.link(vae[0], vae[1], dec2, 1, ids())
        image = (dec2, 0)
    if rng.random() < 0.4:
        if use_subgraphs and rng.random() < 0.4:
            defn = next((d for d in b.subgraphs if d["name"] in ("Post-process", "Upscale 4x then shrink")), None)
            if defn is None:
                defn = _postprocess_subgraph(b) if rng.random() < 0.35 else _upscale_subgraph(b)
            inst = _instance(b, g, defn, (sx + 1100, y + 300))
            g.link(image[0], image[1], inst, 0, ids())
            image = (inst, 0)
        else:
            mode = 2 if rng.random() < 0.1 else 0
            up = _loader(b, g, "UpscaleModelLoader", (sx + 1100, y + 400), mode=mode)
            apply = g.add("ImageUpscaleWithModel", (sx + 1450, y + 300), [], mode=mode)
            g.link(up, 0, apply, 0, ids())
            g.link(image[0], image[1], apply, 1, ids())
            image = (apply, 0)
    if rng.random() < 0.15:
        rr = g.add("Reroute", (sx + 1700, y + 40), None, props={"showOutputText": False, "horizontal": False})
        g.link(image[0], image[1], rr, 0, ids())
        rr["outputs"][0]["type"] = "IMAGE"
        image = (rr, 0)
    for k in range(_weighted(rng, [(0, 0.45), (1, 0.35), (2, 0.15), (3, 0.05)])):
        image = _custom_node(b, g, image, (sx + 1800 + 120 * k, y + 400 * rng.random()))
    save = g.add(rng.choice(["SaveImage", "SaveImage", "PreviewImage"]), (sx + 2200, y), [])
    if save["type"] == "SaveImage":
        save["widgets_values"] = [f"{rng.choice(WF_TOPICS).replace(' ', '_')}/{rng.choice(WORDS)}"]
    g.link(image[0], image[1], save, 0, ids())
    if rng.random() < 0.35:
        lines = rng.sample(NOTE_LINES, rng.randint(2, len(NOTE_LINES)))
        typ = rng.choice(["Note", "MarkdownNote"])
        body = "\n".join(("- " if typ == "MarkdownNote" else "") + line for line in lines)
        if typ == "MarkdownNote":
            body = (
                "## Notes\n\n"
                + body
                + "\n\n**Models**\n\n"
                + "\n".join(
                    f"- [{m.split('/')[-1]}](https://huggingface.co/someone/{m.split('/')[-1]})"
                    for m in rng.sample(ctx.models["loras"], 4)
                )
            )
        g.add(typ, (x - 600, y), [body], props={"text": ""} if typ == "Note" else {})
    xs = [n["pos"][0] for n in g.nodes[n0:]]
    ys = [n["pos"][1] for n in g.nodes[n0:]]
    g.groups.append(
        {
            "id": len(g.groups) + 1,
            "title": f"{rng.choice(WF_TOPICS).title()} {len(g.groups) + 1}",
            "bounding": [min(xs) - 20, min(ys) - 60, max(xs) - min(xs) + 560, max(ys) - min(ys) + 500],
            "color": rng.choice(["#3f789e", "#8A8", "#a1309b", "#b58b2a", "#444"]),
            "font_size": 24,
            "flags": {},
        }
    )


def _custom_node(
    b: Build, g: Graph, image: tuple[dict[str, Any], int], pos: tuple[float, float]
) -> tuple[dict[str, Any], int]:
    """Adds a node from a generated pack (70%) or from a pack that is not installed; returns the (node, slot)
    that now carries the image (unchanged when the node is a model provider, not an image filter)."""
    rng = b.rng
    if rng.random() < 0.7:
        typ, widgets, cnr, ver = rng.choice(b.ctx.pack_nodes)
        values: list[Any] = [rng.choice([0.5, 1, "auto", "lab", True, 512, "default"]) for _ in widgets]
        node = g.add(
            typ,
            pos,
            values,
            spec=([("image", "IMAGE")], [("IMAGE", "IMAGE")], widgets, (320, 130)),
            props={"cnr_id": cnr, "ver": ver},
        )
        g.link(image[0], image[1], node, 0, b.ids())
        return node, 0
    typ, widgets, folder = rng.choice(UNKNOWN_TYPES)
    values = [rng.choice([1, 0.35, "enable", 512, True, "lanczos"]) for _ in widgets]
    if folder is not None:
        files = b.ctx.models.get(folder)
        ref = rng.choice(files) if files and rng.random() < 0.7 else f"{_model_stem(rng)}.pth"
        values[0] = ref.replace("/", "\\") if b.windows else ref
    props: dict[str, Any] = {"aux_id": f"someone/{typ.split()[0].split('_')[0]}-pack", "ver": "1f3e2c9"}
    if folder is None:
        node = g.add(
            typ,
            pos,
            values,
            spec=([("image", "IMAGE")], [("IMAGE", "IMAGE")], widgets, (340, 300)),
            props=props,
        )
        g.link(image[0], image[1], node, 0, b.ids())
        return node, 0
    # a model provider (detector, SAM, IP-Adapter...) whose output feeds a node of the same missing pack
    out_type = typ.upper().replace(" ", "_")
    g.add(typ, pos, values, spec=([], [(out_type, out_type)], widgets, (315, 82)), props=props)
    return image


def _build_workflow(
    rng: random.Random, ctx: Context, target: int, use_subgraphs: bool, windows: bool
) -> dict[str, Any]:
    """Returns a UI-format (0.4) workflow whose indented JSON is about ``target`` bytes."""
    modern = rng.random() < 0.7
    b = Build(rng=rng, ctx=ctx, windows=windows, ids=Counter(), node_ids=Counter())
    g = Graph(modern=modern, node_ids=b.node_ids)
    compact = 0
    row = 0
    while _estimate(compact, b) < target:
        n0 = len(g.nodes)
        _pipeline(b, g, (row % 3) * 5200, (row // 3) * 1400, use_subgraphs, first=row == 0)
        compact += len(json.dumps(g.nodes[n0:], ensure_ascii=False, separators=(",", ":")))
        row += 1
    workflow: dict[str, Any] = {
        "id": _uuid(rng),
        "revision": rng.randint(0, 40),
        "last_node_id": b.node_ids.last,
        "last_link_id": b.ids.last,
        "nodes": g.nodes,
        "links": g.links,
        "groups": g.groups,
    }
    if b.subgraphs:
        # one flat list, nested ones included (a "Post-process" subgraph holds an "Upscale" instance)
        workflow["definitions"] = {"subgraphs": b.subgraphs}
    workflow["config"] = {}
    workflow["extra"] = {
        "ds": {
            "scale": round(rng.uniform(0.15, 1.3), 16),
            "offset": [rng.uniform(-9000, 3000), rng.uniform(-4000, 2000)],
        },
        "frontendVersion": f"1.{rng.randint(10, 30)}.{rng.randint(0, 12)}",
    }
    if rng.random() < 0.4:
        workflow["extra"].update(
            {
                "VHS_latentpreview": False,
                "VHS_latentpreviewrate": 0,
                "VHS_MetadataImage": True,
                "VHS_KeepIntermediate": True,
            }
        )
    workflow["version"] = 0.4
    return workflow


def _estimate(compact_nodes: int, b: Build) -> int:
    """Estimates the indented JSON size of the workflow built so far from the compact size of its nodes
    (links and subgraph definitions are added roughly; the factor was measured on generated files)."""
    links = b.ids.last * 60
    subgraphs = sum(len(d["nodes"]) for d in b.subgraphs) * 1100
    return int(compact_nodes * INDENT_FACTOR) + links + subgraphs


def _api_prompt(workflow: dict[str, Any]) -> dict[str, Any]:
    """Returns the API ("prompt") form of a flat UI workflow, as ComfyUI stores it beside the workflow in
    PNG files."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    origin = {lk[0]: (lk[1], lk[2]) for lk in workflow["links"]}

    def resolve(link_id: int) -> tuple[int, int] | None:
        src = origin.get(link_id)
        while src is not None and nodes[src[0]]["type"] == "Reroute":
            src = origin.get(nodes[src[0]]["inputs"][0]["link"])
        return src

    prompt: dict[str, Any] = {}
    for node in workflow["nodes"]:
        typ = node["type"]
        if typ in FRONTEND_ONLY or node["mode"] in (2, 4):
            continue
        spec_widgets = NODE_SPECS[typ][2] if typ in NODE_SPECS else [i["name"] for i in node["inputs"] if "widget" in i]
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values") or []
        names = list(spec_widgets)
        if typ not in NODE_SPECS and not names:
            names = [f"widget_{k}" for k in range(len(values))]
        for name, value in zip(names, values, strict=False):
            if name not in NOT_IN_PROMPT_WIDGETS:
                inputs[name] = value
        for inp in node["inputs"]:
            if inp.get("link") is not None and "widget" not in inp:
                src = resolve(inp["link"])
                if src is not None and nodes[src[0]]["mode"] not in (2, 4):
                    inputs[inp["name"]] = [str(src[0]), src[1]]
        prompt[str(node["id"])] = {
            "inputs": inputs,
            "class_type": typ,
            "_meta": {"title": node.get("title", typ)},
        }
    return prompt


# ------------------------------------------------------------------------------------------------------ PNG


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """Returns one PNG chunk: length, type, data and the CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_text(texts: list[tuple[str, str]], width: int = 64, height: int = 64, seed: int = 0) -> bytes:
    """Returns a valid RGB PNG image of ``width`` x ``height`` with one ``tEXt`` chunk per (keyword, text)."""
    r, g, b = (seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: none
        for x in range(width):
            rows += bytes(((r + x * 3) % 256, (g + y * 3) % 256, b))
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    out += [_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + text.encode("latin-1")) for key, text in texts]
    out.append(_png_chunk(b"IDAT", zlib.compress(bytes(rows), 9)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


# ------------------------------------------------------------------------------------------------- driver

_CTX: Context | None = None


def _init_worker(ctx: Context) -> None:
    """Stores the shared context in a worker process."""
    global _CTX
    _CTX = ctx


@dataclass(frozen=True)
class Job:
    """One workflow file to write: index (seeds its generator), path, and what kind of file it is."""

    index: int
    path: str
    png: bool
    subgraphs: bool
    windows: bool
    target: int


def _write_workflow(job: Job, seed: int) -> int:
    """Builds and writes one workflow file; returns the number of bytes written."""
    assert _CTX is not None
    rng = random.Random(seed * 1_000_003 + job.index + 1)
    target = job.target
    for _attempt in range(8):
        wf = _build_workflow(rng, _CTX, target, job.subgraphs, job.windows)
        text = json.dumps(wf, indent=2, ensure_ascii=False)
        size = len(text.encode())
        # the size estimate rarely misses the band: rebuild whole pipelines rather than pad
        if size < MIN_WORKFLOW_BYTES:
            target = int(target * 1.3)
        elif size > MAX_WORKFLOW_BYTES:
            target = int(target * 0.8)
        else:
            break
    if job.png:
        texts = [("prompt", json.dumps(_api_prompt(wf))), ("workflow", json.dumps(wf))]
        data = png_with_text(texts, seed=job.index)
    else:
        data = text.encode()
    Path(job.path).write_bytes(data)
    return len(data)


def _plan(root: Path, workflows: int, rng: random.Random) -> list[Job]:
    """Chooses the path, kind and target size of every workflow file (in the parent, so names stay unique)."""
    base = root / "user" / "default" / "workflows"
    jobs: list[Job] = []
    used: set[str] = set()
    p_sub = SUBGRAPH_SHARE / (1 - PNG_SHARE)
    png_counter = 0
    for i in range(workflows):
        png = rng.random() < PNG_SHARE
        subgraphs = not png and rng.random() < p_sub
        depth = _weighted(rng, [(0, 0.4), (1, 0.35), (2, 0.2), (3, 0.05)])
        folder = "/".join(rng.sample(WF_FOLDERS, depth))
        if png:
            png_counter += 1
            name = f"ComfyUI_{png_counter * 7 + rng.randrange(7):05d}_.png"
        else:
            topic = rng.choice(WF_TOPICS)
            name = (
                rng.choice(
                    [
                        f"{topic.replace(' ', '_')}_v{rng.randint(1, 12)}",
                        f"{topic.title()} ({rng.choice(WORDS)})",
                        f"{rng.choice(WORDS)}-{topic}",
                        f"{topic} {rng.randint(2023, 2025)}-{rng.randint(1, 12):02d}",
                    ]
                )
                + ".json"
            )
        rel = f"{folder}/{name}" if folder else name
        while rel.lower() in used:
            stem, ext = rel.rsplit(".", 1)
            rel = f"{stem} (1).{ext}"
        used.add(rel.lower())
        # sizes: log-normal around 60 KB, kept inside the 20-500 KB band with room for the estimate's error
        target = int(math.exp(rng.gauss(math.log(60_000), 0.75)))
        target = max(26_000, min(430_000, target))
        jobs.append(Job(i, str(base / rel), png, subgraphs, rng.random() < WINDOWS_SHARE, target))
    for folder in {str(Path(j.path).parent) for j in jobs}:
        Path(folder).mkdir(parents=True, exist_ok=True)
    return jobs


def _write_tree(root: Path, tree: ModelTree, packs: list[Pack]) -> int:
    """Writes the model tree, the custom node packs and the user settings; returns the node types count."""
    _write_models(root, tree)
    node_types = _write_packs(root, packs)
    user = root / "user" / "default"
    user.mkdir(parents=True, exist_ok=True)
    settings = {
        "Comfy.UseNewMenu": "Top",
        "Comfy.LinkRenderMode": 2,
        "Comfy.Workflow.SortNodeIdOnSave": False,
    }
    (user / "comfy.settings.json").write_text(json.dumps(settings, indent=2))
    return node_types


def generate_install(
    root: Path, workflows: int = 2000, models: int = 20000, seed: int = 0, processes: int | None = None
) -> dict[str, int]:
    """Writes a benchmark ComfyUI install under ``root`` and returns counts of what it wrote.

    The returned dict holds ``workflows`` (files written, PNGs included), ``pngs``, ``json_files``,
    ``subgraph_workflows``, ``windows_workflows``, ``model_files`` (zero-byte model files),
    ``other_model_files`` (markers, sidecars, configs), ``custom_node_packs``, ``custom_node_types`` and
    ``bytes`` (total size of the workflow files). The content depends only on ``seed``; ``processes``
    (default: CPU count, at most 8) only changes how fast it is written.
    """
    root = Path(root)
    rng = random.Random(seed)
    tree = _plan_models(models, rng)
    packs = _make_packs(rng)
    favourites = {f: rng.sample(files, min(len(files), 12)) for f, files in tree.files.items() if files}
    pack_nodes = [(name, widgets, p.cnr_id, p.version) for p in packs for name, widgets in p.nodes.items()]
    ctx = Context(models=tree.files, favourites=favourites, pack_nodes=pack_nodes)
    jobs = _plan(root, workflows, rng)
    processes = processes or min(os.cpu_count() or 1, 8)
    if processes > 1 and len(jobs) > 50:
        # the workers build and write workflows while this process writes the (I/O-bound) trees
        with ProcessPoolExecutor(processes, initializer=_init_worker, initargs=(ctx,)) as pool:
            pending = pool.map(_write_workflow, jobs, [seed] * len(jobs), chunksize=16)
            node_types = _write_tree(root, tree, packs)
            results = list(pending)
    else:
        node_types = _write_tree(root, tree, packs)
        _init_worker(ctx)
        results = [_write_workflow(job, seed) for job in jobs]
    return {
        "workflows": len(jobs),
        "pngs": sum(j.png for j in jobs),
        "json_files": sum(not j.png for j in jobs),
        "subgraph_workflows": sum(j.subgraphs for j in jobs),
        "windows_workflows": sum(j.windows for j in jobs),
        "model_files": tree.count,
        "other_model_files": len(tree.others),
        "custom_node_packs": len(packs),
        "custom_node_types": node_types,
        "bytes": sum(results),
    }


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python bench/generate.py OUTDIR [--workflows N] [--models N] [--seed N]``."""
    parser = argparse.ArgumentParser(description="Write a large synthetic ComfyUI install for benchmarks.")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--workflows", type=int, default=2000)
    parser.add_argument("--models", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args(argv)
    if args.outdir.exists() and any(args.outdir.iterdir()):
        print(f"error: {args.outdir} exists and is not empty", file=sys.stderr)
        return 2
    start = time.perf_counter()
    counts = generate_install(args.outdir, args.workflows, args.models, args.seed, args.processes)
    counts_text = ", ".join(f"{k}={v}" for k, v in counts.items())
    print(f"wrote {args.outdir} in {time.perf_counter() - start:.1f}s: {counts_text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
