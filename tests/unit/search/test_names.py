"""Pure name rules: validity, the query cascade, folder types, exact comparison, AIR and URL parsing."""

from __future__ import annotations

import pytest

from comfywatchman.search import names
from comfywatchman.search.names import CivitaiRef, HfRef


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        "model\x00.safetensors",
        "model\n.safetensors",
        "a\x7f.pt",
        "model.safetensors?download=true",
        "model.safetensors&token=abc",
        "x.ckpt#frag",
        "https://civitai.com/api/download/models/1",
        "../../etc/passwd",
        "loras/../../x.safetensors",
        "..\\..\\x.safetensors",
        "/abs/model.safetensors",
        "\\\\server\\share\\x.pt",
        "C:\\models\\x.safetensors",
        "c:x.safetensors",
        "loras/",
    ],
)
def test_invalid_filename_reason_refuses_when_name_escapes_or_is_not_a_file(name):
    assert names.invalid_filename_reason(name) is not None


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors",
        "SDXL\\juggernaut.safetensors",
        "sub/dir/x.gguf",
        "my..model.pt",
        "été.pt",
        "a b (1).safetensors",
    ],
)
def test_invalid_filename_reason_accepts_when_name_is_a_plain_relative_file(name):
    assert names.invalid_filename_reason(name) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("add_detail.safetensors", ["add_detail"]),
        ("SDXL/juggernaut_v1_5.safetensors", ["juggernaut_v1_5", "juggernaut"]),
        ("flux1-dev-fp8_e4m3fn.safetensors", ["flux1-dev-fp8_e4m3fn", "flux1-dev"]),
        ("flux1-dev-Q4_K_M.gguf", ["flux1-dev-Q4_K_M", "flux1-dev"]),
        ("wan2.1_t2v_14B_bf16.safetensors", ["wan2.1_t2v_14B_bf16", "wan2.1_t2v_14B"]),
        ("wan2.1_t2v_14B_fp8_scaled.safetensors", ["wan2.1_t2v_14B_fp8_scaled", "wan2.1_t2v_14B"]),
        ("sd_xl_base_1.0.safetensors", ["sd_xl_base_1.0", "sd_xl_base"]),
        ("model_fp16.safetensors", ["model_fp16", "model"]),
        ("v1_5.safetensors", ["v1_5"]),
        ("t5xxl_fp8_e4m3fn_scaled.safetensors", ["t5xxl_fp8_e4m3fn_scaled", "t5xxl"]),
        ("flux1-dev-Q8_0.gguf", ["flux1-dev-Q8_0", "flux1-dev"]),
    ],
)
def test_query_cascade_strips_variant_suffixes_when_present(name, expected):
    assert names.query_cascade(name) == expected


@pytest.mark.parametrize(
    ("folder", "types"),
    [
        ("checkpoints", ("Checkpoint",)),
        ("loras", ("LORA", "LoCon", "DoRA")),
        ("embeddings", ("TextualInversion",)),
        ("vae", ("VAE",)),
        ("upscale_models", ("Upscaler",)),
        ("controlnet", ("Controlnet",)),
        ("unet", ("Checkpoint", "UNet")),
        ("something_new", ()),
        (None, ()),
    ],
)
def test_civitai_types_maps_folder_when_known(folder, types):
    assert names.civitai_types(folder) == types


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Add_Detail.SAFETENSORS", "add_detail.safetensors", True),
        ("SDXL\\x.pt", "other/X.pt", True),
        ("x_fp16.safetensors", "x_fp8.safetensors", False),
        ("x.safetensors", "x.ckpt", False),
        ("cafe\u0301.pt", "caf\u00e9.pt", True),
    ],
)
def test_same_basename_compares_exactly_ignoring_case_when_called(a, b, same):
    assert names.same_basename(a, b) is same


def test_variant_key_equal_when_names_differ_only_by_precision():
    assert names.variant_key("x_model_fp16.safetensors") == names.variant_key("X-Model-fp8_e4m3fn.safetensors")
    assert names.variant_key("x_model.safetensors") != names.variant_key("y_model.safetensors")


def test_is_generic_basename_true_when_diffusers_name():
    assert names.is_generic_basename("transformer/diffusion_pytorch_model.safetensors")
    assert not names.is_generic_basename("ae.safetensors")


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("urn:air:sdxl:lora:civitai:328553@368189", CivitaiRef(328553, 368189)),
        ("urn:air:flux1:checkpoint:civitai:618692@691639.safetensors", CivitaiRef(618692, 691639)),
        ("urn:air:sd1:embedding:civitai:7808", CivitaiRef(7808, None)),
        ("urn:air:sdxl:lora:huggingface:x/y", None),
        ("not an air", None),
    ],
)
def test_parse_air_returns_ids_when_civitai_urn(text, ref):
    assert names.parse_air(text) == ref


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        ("https://civitai.com/models/4201/realistic-vision?modelVersionId=130072", CivitaiRef(4201, 130072)),
        ("https://civitai.com/models/4201", CivitaiRef(4201, None)),
        ("https://civitai.com/api/download/models/130072?type=Model&fileId=99", CivitaiRef(None, 130072, 99)),
        ("https://civitai.red/api/v1/model-versions/130072", CivitaiRef(None, 130072)),
        ("https://www.civitai.com/model-versions/5", CivitaiRef(None, 5)),
        ("https://evil.example/models/4201", None),
        ("ftp://civitai.com/models/1", None),
        ("https://civitai.com/images/123", None),
    ],
)
def test_parse_civitai_url_returns_ids_when_civitai_url(url, ref):
    assert names.parse_civitai_url(url) == ref


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (
            "https://huggingface.co/Comfy-Org/flux1-dev/resolve/main/split%20files/x.safetensors",
            HfRef("Comfy-Org/flux1-dev", "main", "split files/x.safetensors"),
        ),
        (
            "https://huggingface.co/city96/FLUX.1-dev-gguf/blob/abc123/flux1-dev-Q4_K_S.gguf",
            HfRef("city96/FLUX.1-dev-gguf", "abc123", "flux1-dev-Q4_K_S.gguf"),
        ),
        ("https://huggingface.co/Kijai/WanVideo_comfy", HfRef("Kijai/WanVideo_comfy")),
        ("https://huggingface.co/datasets/x/y/resolve/main/z.bin", None),
        ("https://civitai.com/models/1", None),
    ],
)
def test_parse_hf_url_returns_repo_revision_path_when_hub_url(url, ref):
    assert names.parse_hf_url(url) == ref
