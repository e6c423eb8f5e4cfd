"""Installed variants of a missing file: name splitting (table) and the index over a model cache."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfywatchman.comfy.folders import MODEL_EXTENSIONS
from comfywatchman.comfy.variants import (
    _SEPARATORS,
    _TOKEN,
    _VERSION,
    MAX_VARIANTS,
    NameParts,
    VariantIndex,
    differences,
    keys_of,
    loader_note,
    split_name,
)
from comfywatchman.workflow import names


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("flux1-dev.safetensors", NameParts("flux1_dev", ".safetensors", (), None)),
        ("flux1-dev-Q4_K_S.gguf", NameParts("flux1_dev", ".gguf", ("q4_k_s",), None)),
        ("FLUX/flux1-dev-Q8_0.gguf", NameParts("flux1_dev", ".gguf", ("q8_0",), None)),
        ("flux1_dev_fp8_e4m3fn.safetensors", NameParts("flux1_dev", ".safetensors", ("fp8_e4m3fn",), None)),
        ("t5xxl_fp8_e4m3fn_scaled.safetensors", NameParts("t5xxl", ".safetensors", ("fp8_e4m3fn_scaled",), None)),
        ("umt5-xxl-encoder-Q5_K_M.gguf", NameParts("umt5_xxl_encoder", ".gguf", ("q5_k_m",), None)),
        ("wan2.1_t2v_14B_bf16.safetensors", NameParts("wan2_1_t2v_14b", ".safetensors", ("bf16",), None)),
        ("model_fp8_e5m2.sft", NameParts("model", ".sft", ("fp8_e5m2",), None)),
        ("v1-5-pruned-emaonly.ckpt", NameParts("v1_5_pruned_emaonly", ".ckpt", (), None)),
        ("realvis_v4_0.safetensors", NameParts("realvis", ".safetensors", (), "v4.0")),
        ("fp16.safetensors", NameParts("", ".safetensors", ("fp16",), None)),
        ("notes.txt", NameParts("notes_txt", "", (), None)),
        ("ltx-video-2b-v0.9.5.safetensors", NameParts("ltx_video_2b", ".safetensors", (), "v0.9.5")),
    ],
)
def test_split_name(name: str, parts: NameParts) -> None:
    assert split_name(name) == parts


def reference_split(name: str) -> NameParts:
    """``split_name`` as it was written first, one regular expression per step: the fast one must agree."""
    base = names.basename(name)
    stem, dot, ext = base.rpartition(".")
    extension = f".{ext.casefold()}" if dot and f".{ext.casefold()}" in MODEL_EXTENSIONS else ""
    if not extension:
        stem = base
    text = _SEPARATORS.sub("_", stem.casefold()).strip("_")
    tokens: tuple[str, ...] = ()
    if re.search(r"\d", text):
        pieces = _TOKEN.split(text)
        if len(pieces) > 1:
            tokens = tuple(pieces[1::2])
            text = "".join(pieces[0::2]).strip("_")
    version = None
    found = _VERSION.search(text)
    if found is not None and found.start() > 0:
        version = found.group("tok").replace("_", ".")
        text = text[: found.start()]
    return NameParts(text, extension, tokens, version)


# Pieces of names: tokens, versions, extensions, every kind of separator (spaces and control characters
# included, ASCII or not), case that folds in more than one way, and subfolders.
_PIECES = [
    *"aZz09_-. /\\\t\n\x0b\x1c\x7f\u00a0\u2003\u3000\u0661\u00df\u0130\u212a",
    *["fp16", "FP8_E4M3FN", "fp8_e4m3fn_scaled", "q4_k_m", "Q8_0", "iq2_xxs", "bf16", "nf4", "int8", "mxfp4"],
    *["v1", "V2_0", "v0.9.5", "_v", "--", "__", "..", "  ", ".safetensors", ".GGUF", ".ckpt", ".txt", "flux1", "dev"],
]


@settings(max_examples=3000)
@given(st.lists(st.sampled_from(_PIECES), max_size=16).map("".join))
def test_split_name_agrees_with_the_reference_on_any_name(name: str) -> None:
    assert split_name(name) == reference_split(name)
    assert type(split_name(name)) is NameParts


def cache(files: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    return {
        "folders": {
            folder: {"paths": [f"/m/{folder}"], "files": [{"name": n, "dir": 0, "size": s} for n, s in entries]}
            for folder, entries in files.items()
        }
    }


INSTALL = cache(
    {
        "diffusion_models": [
            ("flux1-dev-fp8_e4m3fn.safetensors", 11_900),
            ("gguf/flux1-dev-Q4_K_S.gguf", 6_800),
            ("wan2.1_t2v_14B-Q4_K_M.gguf", 9_000),
            ("unrelated.safetensors", 1),
        ],
        "checkpoints": [("v1-5-pruned-emaonly.safetensors", 4_200), ("sub/same_name.safetensors", 5)],
        "loras": [("flux1-dev.safetensors", 3)],
    }
)


def test_fp16_wanted_fp8_present_needs_no_loader_change_and_comes_first() -> None:
    found = VariantIndex.from_cache(INSTALL).variants("flux1-dev_fp16.safetensors", "diffusion_models", "UNETLoader")
    assert [v["installed_as"] for v in found] == ["flux1-dev-fp8_e4m3fn.safetensors", "gguf/flux1-dev-Q4_K_S.gguf"]
    assert found[0]["differs"] == ["precision fp16 -> fp8_e4m3fn"]
    assert found[0]["loader_note"] is None and found[0]["size"] == 11_900
    assert found[1]["differs"] == ["precision fp16 -> q4_k_s", "format .safetensors -> .gguf"]
    assert found[1]["loader_note"] == "a .gguf file needs UnetLoaderGGUF (ComfyUI-GGUF) instead of UNETLoader"


def test_q8_wanted_q4_present_keeps_the_gguf_loader() -> None:
    found = VariantIndex.from_cache(INSTALL).variants("wan2.1_t2v_14B-Q8_0.gguf", "diffusion_models", "UnetLoaderGGUF")
    assert found == [
        {
            "installed_as": "wan2.1_t2v_14B-Q4_K_M.gguf",
            "size": 9_000,
            "differs": ["precision q8_0 -> q4_k_m"],
            "loader_note": None,
        }
    ]


def test_gguf_wanted_safetensors_present_names_the_core_loader() -> None:
    found = VariantIndex.from_cache(INSTALL).variants("flux1-dev-Q8_0.gguf", "diffusion_models", "UnetLoaderGGUF")
    assert [v["installed_as"] for v in found] == ["gguf/flux1-dev-Q4_K_S.gguf", "flux1-dev-fp8_e4m3fn.safetensors"]
    assert found[0]["loader_note"] is None  # the same loader first
    assert found[1]["loader_note"] == "not a .gguf file: it loads with UNETLoader instead of UnetLoaderGGUF"


def test_ckpt_wanted_safetensors_present_differs_in_format_only() -> None:
    found = VariantIndex.from_cache(INSTALL).variants("v1-5-pruned-emaonly.ckpt", "checkpoints")
    assert found == [
        {
            "installed_as": "v1-5-pruned-emaonly.safetensors",
            "size": 4_200,
            "differs": ["format .ckpt -> .safetensors"],
            "loader_note": None,
        }
    ]


def test_only_the_same_folder_type_counts_and_the_same_file_elsewhere_is_no_variant() -> None:
    index = VariantIndex.from_cache(INSTALL)
    assert index.variants("flux1-dev.safetensors", "checkpoints") == []  # the LoRA of that name is no checkpoint
    assert index.variants("same_name.safetensors", "checkpoints") == []  # the scan notes it in another subfolder
    assert index.variants("flux1-dev_fp16.safetensors", None) == []
    assert index.variants("fp16.safetensors", "diffusion_models") == []


def test_a_folder_is_indexed_when_first_asked_about() -> None:
    index = VariantIndex.from_cache(INSTALL)
    assert index.by_key == {}
    index.variants("flux1-dev_fp16.safetensors", "diffusion_models")
    assert set(index.by_key) == {"diffusion_models"}
    assert index.variants("x.safetensors", "not_a_folder") == [] and "not_a_folder" in index.by_key


# Names whose key starts, ends or hides among descriptor tokens, separators of every kind, a version, a
# subfolder, upper case, non-ASCII text and a name shadowed in a later directory.
TRICKY_FILES = [
    ("flux1-dev-fp8_e4m3fn.safetensors", 11_900),
    ("FLUX/Flux1.Dev Q8_0.gguf", 12_000),
    ("fp16_flux1-dev.safetensors", 10),
    ("flux1_dev_v2.safetensors", 11),
    ("flux1-dev.safetensors.txt", 12),
    ("sdxl-flux1-dev.safetensors", 13),
    ("Ünï_côdé_bf16.safetensors", 14),
    ("unï_côdé-fp8.sft", 15),
    ("flux1-dev-fp8_e4m3fn.safetensors", 16),  # the same name again: shadowed
    ("q4_k_m.gguf", 17),
    ("model_fp8_scaled.safetensors", 18),
    ("SUB\\Flux1-DEV_bf16.safetensors", 19),
    (" flux1-dev v4.safetensors ", 20),
]
TRICKY = cache({"diffusion_models": TRICKY_FILES})
WANTED = [
    "flux1-dev_fp16.safetensors",
    "flux1_dev_v3.gguf",
    "unï-côdé.safetensors",
    "model.safetensors",
    "fp8_model.safetensors",
    "q8_0.gguf",
    "sdxl_flux1_dev.ckpt",
]


@pytest.mark.parametrize("wanted", WANTED)
def test_a_folder_scanned_for_a_few_files_gives_what_its_index_gives(wanted: str) -> None:
    indexed = VariantIndex.from_cache(TRICKY)
    scanned = VariantIndex.from_cache(TRICKY)
    scanned.expect({"diffusion_models": 1})
    key = split_name(wanted).key
    assert scanned.installed("diffusion_models", key) == indexed.folder("diffusion_models").get(key, [])
    assert scanned.variants(wanted, "diffusion_models") == indexed.variants(wanted, "diffusion_models")
    assert scanned.by_key == {}  # scanned, not indexed
    assert indexed.variants(wanted, "diffusion_models") or wanted in ("model.safetensors", "q8_0.gguf")


def test_a_folder_asked_about_often_is_indexed() -> None:
    index = VariantIndex.from_cache(TRICKY)
    index.expect({"diffusion_models": 5})
    index.variants("flux1-dev_fp16.safetensors", "diffusion_models")
    assert set(index.by_key) == {"diffusion_models"}


# Pieces of printable ASCII names only, the ones ``keys_of`` keys together (the others go through ``split_name``).
_PLAIN_PIECES = [piece for piece in _PIECES if piece.isascii() and piece.isprintable()] + [
    *["fp8mixed", "Q4_K", "iq4_nl", "q5_1", "_v1_", "V3_1_", "-v2", " v4 ", ".pt", ".pt2", ".PTH", ".sft", "x"],
    *["fp8_e5m2_scaled", "nvfp4", "int4", "SUB/", "a\\b", "flux1-dev", ".safetensors.txt", "model"],
]


@settings(max_examples=400)
@given(st.lists(st.lists(st.sampled_from(_PLAIN_PIECES), max_size=14).map("".join), max_size=40))
def test_keys_of_plain_names_is_the_key_of_each(many: list[str]) -> None:
    assert keys_of(many) == [split_name(name).key for name in many]


@settings(max_examples=400)
@given(st.lists(st.lists(st.sampled_from(_PIECES + _PLAIN_PIECES), max_size=12).map("".join), max_size=30))
def test_keys_of_any_names_is_the_key_of_each(many: list[str]) -> None:
    assert keys_of(many) == [split_name(name).key for name in many]


def test_keys_of_names_a_line_of_their_own_cannot_tell_apart() -> None:
    many = ["a\nb.safetensors", "fp16\n", "x_v1\n_v2.gguf", "", "flux1-dev_fp16.safetensors", " \t"]
    assert keys_of(many) == [split_name(name).key for name in many]
    assert keys_of([]) == []


def straightforward_variants(model_cache: dict[str, Any], name: str, folder: str | None) -> list[dict[str, Any]]:
    """The variants of ``name`` worked out the plain way: every installed name of the folder split, the first
    directory's file of a name kept, the candidates of the same key compared."""
    if folder is None or folder not in model_cache["folders"]:
        return []
    wanted = split_name(name)
    if not wanted.key:
        return []
    seen: set[str] = set()
    candidates = []
    for entry in model_cache["folders"][folder]["files"]:
        if entry["name"] in seen:
            continue
        seen.add(entry["name"])
        have = split_name(entry["name"])
        if have.key == wanted.key and have.extension:
            candidates.append((entry["name"], int(entry["size"]), have))
    wanted_base = names.basename(names.normalize(name)).casefold()
    found = []
    for installed_as, size, have in candidates:
        if names.basename(installed_as).casefold() == wanted_base:
            continue
        found.append(
            {
                "installed_as": installed_as,
                "size": size,
                "differs": differences(wanted, have) or ["spelling of the name"],
                "loader_note": loader_note(wanted, have, folder, None),
            }
        )
    found.sort(key=lambda v: (v["loader_note"] is not None, -v["size"], v["installed_as"]))
    return found[:MAX_VARIANTS]


_NAME = st.lists(st.sampled_from(_PIECES + _PLAIN_PIECES + ["flux1-dev", "_fp16", "-Q8_0", ".gguf"]), max_size=8)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(_NAME.map("".join), st.integers(0, 3)), max_size=30),
    st.lists(_NAME.map("".join), max_size=12),
    st.integers(0, 8),
)
def test_variants_of_gives_what_the_straightforward_method_gives(
    installed: list[tuple[str, int]], wanted: list[str], expected: int
) -> None:
    # Names from few pieces: many share a key; sizes from few values: ties are ordered by name; a name twice
    # (in a later directory) is shadowed. Wanted names are installed ones too, bar a piece or two.
    model_cache = cache({"diffusion_models": installed, "loras": installed[:3]})
    wanted = wanted + [n + "_fp16.safetensors" for n, _ in installed[:5]] + [n for n, _ in installed[5:8]]
    asked = [(n, folder, None) for n in wanted for folder in ("diffusion_models", "loras", "vae", None)]
    index = VariantIndex.from_cache(model_cache)
    index.expect({"diffusion_models": expected, "loras": expected})  # a few: scanned; more: indexed
    assert index.variants_of(asked) == [straightforward_variants(model_cache, n, f) for n, f, _ in asked]


def test_variants_of_tricky_names_is_what_the_straightforward_method_gives() -> None:
    asked = [(n, "diffusion_models", None) for n in WANTED + [n for n, _ in TRICKY_FILES]]
    found = VariantIndex.from_cache(TRICKY).variants_of(asked)
    assert found == [straightforward_variants(TRICKY, n, "diffusion_models") for n, _, _ in asked]
    assert sum(bool(f) for f in found) >= 10
    # The shadowed copy of a name (size 16) is never offered: the first directory's file (11,900) is.
    assert all(v["size"] != 16 for f in found for v in f)
