"""ComfyUI-Manager's model list as an offline declaration: exact file name only, one URL only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfywatchman.comfy.manager_files import find_manager_file
from comfywatchman.search.base import Evidence, ModelQuery, Status
from comfywatchman.search.model_list import ModelList


def _list(tmp_path: Path, models: list[dict]) -> ModelList:
    path = tmp_path / "model-list.json"
    path.write_text(json.dumps({"models": models}))
    return ModelList.load(path)


ENTRY = {"name": "TAEF1 Decoder", "type": "TAESD", "base": "FLUX.1", "save_path": "vae_approx",
         "filename": "taef1_decoder.pth", "url": "https://github.com/madebyollin/taesd/raw/main/taef1_decoder.pth",
         "size": "4.71MB"}  # fmt: skip


def test_resolve_is_found_for_exact_name_case_insensitive(tmp_path: Path) -> None:
    result = _list(tmp_path, [ENTRY]).resolve(ModelQuery("TAEF1_Decoder.PTH", None))
    assert result is not None and result.status is Status.FOUND and result.evidence is Evidence.DECLARED
    assert result.type == "vae_approx" and result.size == 4_710_000 and result.url == ENTRY["url"]


def test_resolve_keeps_the_workflows_folder(tmp_path: Path) -> None:
    result = _list(tmp_path, [ENTRY]).resolve(ModelQuery("taef1_decoder.pth", "vae"))
    assert result is not None and result.type == "vae"


@pytest.mark.parametrize(
    "models",
    [
        [],
        [{**ENTRY, "filename": "taef1_encoder.pth"}],
        [ENTRY, {**ENTRY, "url": "https://huggingface.co/x/resolve/main/taef1_decoder.pth"}],  # two sources: no proof
        [{**ENTRY, "url": "<not a url>"}],
    ],
)
def test_resolve_is_none_without_a_single_exact_entry(tmp_path: Path, models: list[dict]) -> None:
    assert _list(tmp_path, models).resolve(ModelQuery("taef1_decoder.pth", "vae_approx")) is None


def test_load_is_empty_for_unreadable_file(tmp_path: Path) -> None:
    bad = tmp_path / "model-list.json"
    bad.write_text("{")
    assert ModelList.load(bad).by_name == {} and ModelList.load(None).source is None


def test_find_manager_file_prefers_the_users_manager_install(tmp_path: Path) -> None:
    own = tmp_path / "custom_nodes" / "ComfyUI-Manager"
    own.mkdir(parents=True)
    (own / "model-list.json").write_text('{"models": []}')
    assert find_manager_file(tmp_path, "model-list.json") == own / "model-list.json"


def test_packaged_manager_list_resolves_a_real_entry(tmp_path: Path) -> None:
    path = find_manager_file(tmp_path, "model-list.json")  # the comfyui-manager package
    assert path is not None
    result = ModelList.load(path).resolve(ModelQuery("taef1_decoder.pth", "vae_approx"))
    assert result is not None and result.status is Status.FOUND


def test_resolve_is_none_for_generic_names(tmp_path: Path) -> None:
    url = "https://huggingface.co/Kwai-Kolors/Kolors/resolve/main/vae/diffusion_pytorch_model.safetensors"
    generic = {**ENTRY, "filename": "diffusion_pytorch_model.safetensors", "url": url}
    assert _list(tmp_path, [generic]).resolve(ModelQuery("diffusion_pytorch_model.safetensors", "vae")) is None


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://example.com/a.pth", True),
        ("http://example.com/a.pth", True),
        ("HTTPS://example.com/a.pth", True),  # urlsplit's scheme is lower case
        (" https://example.com/a.pth", True),  # urlsplit strips leading blanks
        ("ftp://example.com/a.pth", False),
        ("httpsx://example.com/a.pth", False),
        ("example.com/a.pth", False),
    ],
)
def test_a_url_is_kept_when_urlsplit_gives_an_http_scheme(tmp_path: Path, url: str, kept: bool) -> None:
    model_list = _list(tmp_path, [{**ENTRY, "url": url}])
    assert (ENTRY["filename"] in model_list.by_name) is kept


def test_a_list_orjson_refuses_is_read_as_the_standard_library_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "model-list.json"
    path.write_text('{"models": [' + json.dumps(ENTRY)[:-1] + ', "weight": NaN, "id": 123456789012345678901234}]}')
    model_list = ModelList.load(path)
    assert model_list.source == str(path) and model_list.by_name[ENTRY["filename"]][0]["id"] == 123456789012345678901234
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # a byte order mark: not JSON to either
    assert ModelList.load(path).source is None
