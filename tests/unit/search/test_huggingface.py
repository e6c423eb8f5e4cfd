"""The HuggingFace client and backend against the fake Hub: repo walking, exact names, hashes, gated repos."""

from __future__ import annotations

import pytest

from comfywatchman.search import policy
from comfywatchman.search.base import Declaration, Evidence, ModelQuery, Status
from comfywatchman.search.http import HttpClient
from comfywatchman.search.huggingface import HuggingFaceBackend, HuggingFaceClient, search_terms
from tests.fakes import Reply
from tests.fakes.hf_server import lfs_sha
from tests.helpers.config import config_with
from tests.unit.search.conftest import fast_settings, make_config, make_context

WAN = "wan2.1_t2v_14B_fp8_scaled.safetensors"


@pytest.fixture
def backend(tmp_path, hub_server):
    return HuggingFaceBackend(make_context(make_config(tmp_path, hub=hub_server)))


@pytest.fixture
def client(hub_server):
    return HuggingFaceClient(HttpClient(fast_settings()), hub_server.url)


def test_search_finds_file_in_repackager_repo_when_basename_matches(backend, hub_server):
    result = backend.search(ModelQuery(f"wan/{WAN.upper()}", "diffusion_models"))
    assert result.status is Status.FOUND and result.evidence is Evidence.EXACT_FILENAME
    repo = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
    path = f"split_files/diffusion_models/{WAN}"
    assert result.details["huggingface"]["repo_id"] == repo
    assert result.details["huggingface"]["path"] == path
    assert result.details["huggingface"]["revision"] == "main"
    assert result.details["huggingface"]["commit"] == hub_server.repos[repo].sha
    assert result.sha256 == lfs_sha("wan14") and result.size == 14_000_000_000
    assert result.url == f"{hub_server.url}/{repo}/resolve/main/{path}"
    assert any(r.method == "HEAD" for r in hub_server.requests)


def test_search_says_needs_access_with_repo_page_and_token_when_repo_is_gated(backend):
    result = backend.search(ModelQuery("flux1-dev.safetensors", "diffusion_models"))
    # The file exists but no one without the repo's terms accepted can download it: not FOUND, not queued.
    assert result.status is Status.NEEDS_ACCESS
    assert not policy.may_queue(result)
    assert result.details["huggingface"]["gated"] is True
    assert "HF_TOKEN" in result.reason
    assert result.details["access"] == {
        "page": "https://huggingface.co/black-forest-labs/FLUX.1-dev",
        "token": "HF_TOKEN",
        "why": "gated repo: accept its terms on the Hub and set HF_TOKEN to download",
    }


def test_search_says_access_not_approved_when_token_is_refused(tmp_path, hub_server):
    config = make_config(tmp_path, hub=hub_server, secrets={"HF_TOKEN": "hf_unapproved"})
    result = HuggingFaceBackend(make_context(config)).search(ModelQuery("flux1-dev.safetensors", "unet"))
    assert result.status is Status.NEEDS_ACCESS
    assert result.details["huggingface"]["gated"] is True
    assert "not approved" in result.reason
    head = next(r for r in hub_server.requests if r.method == "HEAD")
    assert head.headers["Authorization"] == "Bearer hf_unapproved"


def test_search_has_no_gated_flag_when_token_is_approved(tmp_path, hub_server):
    hub_server.approved_tokens.add("hf_ok")
    config = make_config(tmp_path, hub=hub_server, secrets={"HF_TOKEN": "hf_ok"})
    result = HuggingFaceBackend(make_context(config)).search(ModelQuery("flux1-dev.safetensors", "unet"))
    assert result.status is Status.FOUND and "gated" not in result.details["huggingface"]


def test_search_lists_gated_repo_as_candidate_when_tree_is_refused(backend, hub_server):
    refused = Reply(401, {"error": "restricted"}, {"X-Error-Code": "GatedRepo"})
    hub_server.fail("/api/models/black-forest-labs/FLUX.1-dev/tree", refused)
    result = backend.search(ModelQuery("flux1-dev.safetensors", "unet"))
    assert result.status is Status.UNCERTAIN
    gated = [c for c in result.candidates if c.details.get("gated")]
    assert gated[0].name == "black-forest-labs/FLUX.1-dev" and "HF_TOKEN" in gated[0].reason


def test_search_is_uncertain_when_name_is_generic(backend, hub_server):
    url = f"{hub_server.url}/someone/sdxl-vae/resolve/main/diffusion_pytorch_model.safetensors"
    query = ModelQuery("diffusion_pytorch_model.safetensors", "vae", declarations=(Declaration("x", url=url),))
    result = backend.search(query)
    assert result.status is Status.UNCERTAIN
    assert "too generic" in result.candidates[0].reason


def test_search_finds_by_hash_when_declared_sha256_matches_another_name(backend, hub_server):
    url = f"{hub_server.url}/someone/sdxl-vae/resolve/main/sdxl_vae.safetensors"
    query = ModelQuery(
        "my_renamed_vae.safetensors",
        "vae",
        declarations=(Declaration("my_renamed_vae.safetensors", url=url, hash=lfs_sha("sdxlvae")),),
    )
    result = backend.search(query)
    assert result.status is Status.FOUND and result.evidence is Evidence.HASH
    assert result.details["huggingface"]["path"] == "sdxl_vae.safetensors"


def test_search_records_declared_evidence_when_workflow_url_names_the_file(backend, hub_server):
    url = f"{hub_server.url}/someone/sdxl-vae/resolve/main/sdxl_vae.safetensors"
    result = backend.search(ModelQuery("sdxl_vae.safetensors", "vae", declarations=(Declaration("x", url=url),)))
    assert result.status is Status.FOUND and result.evidence is Evidence.DECLARED


def test_search_is_uncertain_when_same_name_has_another_declared_sha256(backend):
    query = ModelQuery(WAN, "diffusion_models", declarations=(Declaration(WAN, hash="cd" * 32),))
    result = backend.search(query)
    assert result.status is Status.UNCERTAIN
    assert "sha256 differs" in result.candidates[0].reason


def test_search_offers_other_quantisations_when_exact_one_is_missing(backend):
    result = backend.search(ModelQuery("flux1-dev-Q5_K_S.gguf", "unet"))
    assert result.status is Status.UNCERTAIN
    assert {c.name for c in result.candidates} >= {"flux1-dev-Q4_K_S.gguf", "flux1-dev-Q8_0.gguf"}


def test_search_not_found_when_no_repo_holds_the_file(backend):
    result = backend.search(ModelQuery("zzqx_unknown_thing.safetensors", "loras"))
    assert result.status is Status.NOT_FOUND


def test_search_returns_error_when_hub_keeps_failing(backend, hub_server):
    hub_server.fail("/api/models", 503, 503, 503)
    result = backend.search(ModelQuery(WAN, "diffusion_models"))
    assert result.status is Status.ERROR and "503" in result.reason


def test_search_returns_invalid_filename_without_request_when_traversal(backend, hub_server):
    assert backend.search(ModelQuery("../x.safetensors", "vae")).status is Status.INVALID_FILENAME
    assert hub_server.count == 0


def test_list_files_sends_subpath_url_encoded_when_given(client, hub_server):
    files = client.list_files("Comfy-Org/Wan_2.1_ComfyUI_repackaged", "main", "split_files/vae")
    assert [f.path for f in files] == ["split_files/vae/wan_2.1_vae.safetensors"]
    assert hub_server.requests[0].path.endswith("/tree/main/split_files%2Fvae")
    assert hub_server.requests[0].query["recursive"] == ["true"]


def test_list_files_follows_link_header_when_paged(client, hub_server):
    hub_server.tree_page_size = 1
    files = client.list_files("Comfy-Org/Wan_2.1_ComfyUI_repackaged")
    assert len(files) == 3 and hub_server.count == 3
    assert {f.sha256 for f in files if f.path == "README.md"} == {None}


def test_list_files_returns_none_when_repo_or_revision_missing(client):
    assert client.list_files("nobody/nothing") is None
    assert client.list_files("someone/sdxl-vae", "no-such-branch") is None


def test_model_info_returns_none_when_repo_not_found_answers_401(client):
    assert client.model_info("nobody/nothing") is None
    assert client.model_info("someone/sdxl-vae")["gated"] is False


def test_head_file_reads_linked_etag_and_size_when_lfs(client, hub_server):
    head = client.head_file("someone/sdxl-vae", "main", "sdxl_vae.safetensors")
    assert head.exists and head.status == 302
    assert head.sha256 == lfs_sha("sdxlvae") and head.size == 334_000_000
    missing = client.head_file("someone/sdxl-vae", "main", "nope.safetensors")
    assert not missing.exists and missing.error_code == "EntryNotFound"


def test_head_file_reports_gated_when_401_or_403(client, hub_server):
    head = client.head_file("black-forest-labs/FLUX.1-dev", "main", "ae.safetensors")
    assert head.gated and head.status == 401 and head.error_code == "GatedRepo"


def test_hf_endpoint_prefers_environment_when_hf_endpoint_set(tmp_path):
    # HF_ENDPOINT is a layer of the config loader; the backend reads the endpoint from its section only.
    mirrored = config_with(tmp_path, env={"HF_ENDPOINT": "https://mirror.example/"})
    assert HuggingFaceBackend(make_context(mirrored)).client.endpoint == "https://mirror.example"
    plain = config_with(tmp_path)
    assert HuggingFaceBackend(make_context(plain)).client.endpoint == plain.section("huggingface")["endpoint"]


@pytest.mark.parametrize(
    ("name", "terms"),
    [
        (WAN, ("wan2.1_t2v_14B", "wan")),
        ("flux1-dev-Q4_K_S.gguf", ("flux1-dev", "flux")),
        ("sd_xl_base_1.0.safetensors", ("sd_xl_base", "sd")),
    ],
)
def test_search_terms_gives_stripped_name_and_family_when_called(name, terms):
    assert search_terms(name) == terms
