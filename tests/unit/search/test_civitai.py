"""The Civitai client and backend against the fake Civitai: proof before FOUND, cursor paging, failures."""

from __future__ import annotations

import logging

import pytest

from comfywatchman.search.base import Declaration, Evidence, ModelQuery, Status
from comfywatchman.search.civitai import (
    CivitaiBackend,
    CivitaiClient,
    FileHit,
    decide,
    validate_civitai_image_response,
    version_files,
)
from comfywatchman.search.http import HttpClient
from tests.fakes.civitai_server import make_file, sha256_of
from tests.unit.search.conftest import NOW, fast_settings, make_config, make_context


@pytest.fixture
def backend(tmp_path, civitai_server):
    return CivitaiBackend(make_context(make_config(tmp_path, civitai_server)))


@pytest.fixture
def client(civitai_server):
    return CivitaiClient(HttpClient(fast_settings()), civitai_server.url)


def searches(server):
    return [r for r in server.requests if r.path == "/api/v1/models"]


def test_search_finds_lora_when_file_name_matches_exactly(backend, civitai_server):
    result = backend.search(ModelQuery("Add_Detail.safetensors", "loras"))
    assert result.status is Status.FOUND
    assert result.evidence is Evidence.EXACT_FILENAME
    assert result.details["civitai"] | {} == {
        "model_id": 1001,
        "model_name": "Detail Tweaker LoRA",
        "model_type": "LORA",
        "version_id": 2001,
        "version_name": "v1.0",
        "base_model": "SDXL 1.0",
        "file_id": 3001,
        "file_name": "add_detail.safetensors",
    }
    assert result.sha256 == sha256_of("add_detail.safetensors").lower()
    assert result.size == 2048 * 1024
    assert result.url.startswith("https://civitai.com/api/download/models/2001")
    assert result.type == "loras"
    assert searches(civitai_server)[0].query["types"] == ["LORA", "LoCon", "DoRA"]


def test_search_finds_embedding_when_name_matches(backend):
    assert backend.search(ModelQuery("easynegative.safetensors", "embeddings")).status is Status.FOUND


def test_search_is_uncertain_when_civitai_renamed_the_checkpoint(backend):
    result = backend.search(ModelQuery("juggernaut_xl_v9_rundiffusion.safetensors", "checkpoints"))
    assert result.status is Status.UNCERTAIN
    assert [c.name for c in result.candidates] == ["juggernautXL_v9.safetensors"]
    assert "renames" in result.candidates[0].reason
    assert result.candidates[0].details["version_id"] == 2002


def test_search_finds_by_hash_when_workflow_declares_sha256(backend, civitai_server):
    sha = sha256_of("juggernaut-v9").lower()
    query = ModelQuery(
        "juggernaut_xl_v9_rundiffusion.safetensors",
        "checkpoints",
        declarations=(Declaration("juggernaut_xl_v9_rundiffusion.safetensors", hash=sha, hash_type="sha256"),),
    )
    result = backend.search(query)
    assert result.status is Status.FOUND and result.evidence is Evidence.HASH
    assert result.sha256 == sha
    assert [r.path for r in civitai_server.requests] == [f"/api/v1/model-versions/by-hash/{sha.upper()}"]


def test_search_is_uncertain_when_same_name_has_another_sha256(backend):
    query = ModelQuery(
        "add_detail.safetensors",
        "loras",
        declarations=(Declaration("add_detail.safetensors", hash="ab" * 32),),
    )
    result = backend.search(query)
    assert result.status is Status.UNCERTAIN
    assert "sha256 differs" in result.candidates[0].reason


@pytest.mark.parametrize("name", ["old_style.safetensors", "removed_thing.safetensors"])
def test_search_never_finds_when_model_archived_or_taken_down(backend, name):
    result = backend.search(ModelQuery(name, "loras"))
    assert result.status is Status.NOT_FOUND
    assert result.candidates and result.candidates[0].url is None
    assert result.candidates[0].details["mode"] in ("Archived", "TakenDown")


def test_search_pages_by_cursor_when_match_is_on_second_page(backend, civitai_server):
    result = backend.search(ModelQuery("flux_realism_lora.safetensors", "loras"))
    assert result.status is Status.FOUND
    assert result.details["civitai"]["model_id"] == 5999
    sent = searches(civitai_server)
    assert len(sent) == 2
    assert all("page" not in r.query for r in sent)
    assert sent[1].query["cursor"] == ["100"]


def test_search_is_uncertain_when_two_different_files_share_the_name(backend):
    result = backend.search(ModelQuery("common_name.safetensors", "loras"))
    assert result.status is Status.UNCERTAIN
    assert {c.details["model_id"] for c in result.candidates} == {1006, 1007}


def test_search_is_uncertain_when_only_another_precision_exists(backend):
    result = backend.search(ModelQuery("variant_model_fp16.safetensors", "checkpoints"))
    assert result.status is Status.UNCERTAIN
    assert result.candidates[0].name == "variant_model_fp8.safetensors"
    assert "variant" in result.candidates[0].reason


def test_search_walks_the_cascade_then_not_found_when_nothing_matches(backend, civitai_server):
    result = backend.search(ModelQuery("zzqx_model_v2_fp16.safetensors", "checkpoints"))
    assert result.status is Status.NOT_FOUND
    assert [r.query["query"][0] for r in searches(civitai_server)] == ["zzqx_model_v2_fp16", "zzqx_model"]


@pytest.mark.parametrize("name", ["../../secrets.safetensors", "", "x.safetensors?token=1", "C:\\x.ckpt"])
def test_search_returns_invalid_filename_without_request_when_name_is_bad(backend, civitai_server, name):
    result = backend.search(ModelQuery(name, "loras"))
    assert result.status is Status.INVALID_FILENAME
    assert civitai_server.count == 0


@pytest.mark.parametrize(
    ("actions", "expect"),
    [
        ((503, 503, 503), "503"),
        (("truncated",), "not valid JSON"),
        ((("slow", 0.6), ("slow", 0.6), ("slow", 0.6)), "read timed out"),
        (("reset", "reset", "reset"), "reset"),
    ],
)
def test_search_returns_error_when_service_fails(backend, civitai_server, actions, expect):
    civitai_server.fail("/api/v1/models", *actions)
    result = backend.search(ModelQuery("add_detail.safetensors", "loras"))
    assert result.status is Status.ERROR
    assert expect in result.reason


def test_search_retries_when_rate_limited_then_finds(backend, civitai_server):
    civitai_server.fail("/api/v1/models", 429, 503)
    assert backend.search(ModelQuery("add_detail.safetensors", "loras")).status is Status.FOUND
    assert len(searches(civitai_server)) == 3


def test_search_looks_up_air_directly_when_workflow_declares_one(backend, civitai_server):
    query = ModelQuery(
        "add_detail.safetensors",
        "loras",
        declarations=(Declaration("add_detail.safetensors", url="urn:air:sdxl:lora:civitai:1001@2001"),),
    )
    result = backend.search(query)
    assert result.status is Status.FOUND
    assert [r.path for r in civitai_server.requests] == ["/api/v1/model-versions/2001"]


def test_search_looks_up_civitai_url_directly_when_workflow_declares_one(backend, civitai_server):
    url = "https://civitai.com/models/1002/juggernaut-xl?modelVersionId=2002"
    query = ModelQuery("juggernautXL_v9.safetensors", "checkpoints", declarations=(Declaration("x", url=url),))
    assert backend.search(query).status is Status.FOUND
    assert civitai_server.requests[0].path == "/api/v1/model-versions/2002"


def test_search_models_is_refused_when_page_is_sent_with_query(civitai_server):
    response = HttpClient(fast_settings()).request(
        "GET", f"{civitai_server.url}/api/v1/models", params={"query": "x", "page": 2}
    )
    assert response.status_code == 400
    assert "cursor" in response.json()["error"]


def test_get_model_returns_none_when_404(client):
    assert client.get_model(424242) is None
    assert client.get_version(424242) is None
    assert client.get_model(1001)["name"] == "Detail Tweaker LoRA"


def test_version_by_hash_matches_any_case_and_kind_when_known(client):
    sha = sha256_of("add_detail.safetensors")
    assert client.version_by_hash(sha.lower())["id"] == 2001
    assert client.version_by_hash(sha[:10])["id"] == 2001  # AutoV2
    assert client.version_by_hash("00" * 32) is None


def test_versions_by_hashes_posts_in_chunks_of_100_when_many(client, civitai_server):
    wanted = [sha256_of("add_detail.safetensors"), sha256_of("easynegative.safetensors")]
    hashes = wanted + [f"{i:064x}" for i in range(150)]
    found = client.versions_by_hashes(hashes)
    assert sorted(v["id"] for v in found) == [2001, 2005]
    posts = [r for r in civitai_server.requests if r.method == "POST"]
    assert [len(r.json()) for r in posts] == [100, 52]


def test_validate_civitai_image_response_is_not_found_when_ids_differ(caplog):
    caplog.set_level(logging.DEBUG, logger="comfywatchman.search.civitai")
    check = validate_civitai_image_response(
        123, {"items": [{"id": 999}]}, "https://civitai.com/api/v1/images?imageId=123"
    )
    assert check.status is Status.NOT_FOUND and check.image is None
    assert "999" in check.message and "123" in check.message
    assert "requested id=123 returned id=999 url=https://civitai.com/api/v1/images?imageId=123" in caplog.text


@pytest.mark.parametrize("payload", [{"items": [], "metadata": {}}, {}, None, {"items": ["x"]}])
def test_validate_civitai_image_response_is_not_found_when_empty(payload):
    check = validate_civitai_image_response(7, payload)
    assert check.status is Status.NOT_FOUND
    assert "no image" in check.message


def test_validate_civitai_image_response_returns_image_when_id_matches():
    check = validate_civitai_image_response("5", {"items": [{"id": 5, "meta": {"seed": 1}}]})
    assert check.status is Status.FOUND and check.image == {"id": 5, "meta": {"seed": 1}}


def test_get_image_discards_unrelated_image_when_api_returns_one(client, civitai_server):
    civitai_server.images[11] = {"id": 11, "meta": {}}
    civitai_server.image_answers[12] = {"items": [{"id": 77, "meta": {"prompt": "wrong"}}], "metadata": {}}
    assert client.get_image(11).status is Status.FOUND
    assert client.get_image(12).status is Status.NOT_FOUND
    assert client.get_image(13).status is Status.NOT_FOUND


def _hit(name, mode=None, url="https://civitai.com/api/download/models/1", mtype="LORA"):
    file = make_file(1, name)
    file["downloadUrl"] = url
    return FileHit({"id": 1, "name": "M", "type": mtype, "mode": mode}, {"id": 2, "name": "v1"}, file)


@pytest.mark.parametrize(
    ("hit", "status"),
    [
        (_hit("xmod.safetensors"), Status.FOUND),
        (_hit("XMOD.SAFETENSORS"), Status.FOUND),
        (_hit("xmod.safetensors", mode="Archived"), Status.UNCERTAIN),
        (_hit("xmod.safetensors", url=None), None),
        (_hit("xmod_fp8.safetensors"), Status.UNCERTAIN),
        (_hit("ymod.safetensors"), None),
    ],
)
def test_decide_finds_only_proven_usable_files_when_given_hits(hit, status):
    result = decide(ModelQuery("xmod.safetensors", "loras"), [hit])
    assert (result.status if result else None) is status


def test_decide_is_uncertain_when_name_is_generic():
    result = decide(ModelQuery("model.safetensors", "checkpoints"), [_hit("model.safetensors")])
    assert result.status is Status.UNCERTAIN


# -- issue 11: the model type fits the loader's folder on every path; early access is no download source ----

CRISP = "crisp_style.safetensors"  # a LoRA on the fake Civitai (model 1009, version 2009)
CRISP_SHA = sha256_of(CRISP).lower()


@pytest.mark.parametrize(
    "declaration",
    [
        Declaration(CRISP, hash=CRISP_SHA, hash_type="sha256"),  # hash lookup (by-hash)
        Declaration(CRISP, url="urn:air:sdxl:lora:civitai:1009@2009"),  # AIR URN
        Declaration(CRISP, url="https://civitai.com/models/1009?modelVersionId=2009"),  # Civitai page URL
        Declaration(CRISP, url="https://civitai.com/api/download/models/2009"),  # download URL
    ],
    ids=["hash", "air", "page-url", "download-url"],
)
def test_search_is_uncertain_not_found_when_lora_is_wanted_by_checkpoint_loader(backend, declaration):
    result = backend.search(ModelQuery(CRISP, "checkpoints", declarations=(declaration,)))
    assert result.status is Status.UNCERTAIN
    assert "LORA" in result.reason and "checkpoints" in result.reason
    assert [c.details["model_id"] for c in result.candidates if c.details.get("model_id") == 1009]
    # The same file is FOUND for the loader whose folder it fits.
    assert backend.search(ModelQuery(CRISP, "loras", declarations=(declaration,))).status is Status.FOUND


def test_decide_refuses_proof_when_bulk_by_hash_answer_is_of_another_type(client):
    versions = client.versions_by_hashes([CRISP_SHA])
    hits = [hit for version in versions for hit in version_files(version)]
    query = ModelQuery(CRISP, "checkpoints", declarations=(Declaration(CRISP, hash=CRISP_SHA),))
    result = decide(query, hits)
    assert result is not None and result.status is Status.UNCERTAIN
    assert decide(ModelQuery(CRISP, "loras"), hits).status is Status.FOUND


@pytest.mark.parametrize(
    ("folder", "model_type", "file_type", "fits"),
    [
        ("checkpoints", "Checkpoint", "Model", True),
        ("checkpoints", "LORA", "Model", False),
        ("loras", "LoCon", "Model", True),
        ("vae", "Checkpoint", "VAE", True),  # a checkpoint version can carry its VAE as an extra file
        ("checkpoints", "Checkpoint", "VAE", False),
        ("checkpoints", "Checkpoint", "Training Data", False),
        ("text_encoders", "Checkpoint", "Text Encoder", True),
        ("embeddings", "TextualInversion", "Negative", True),
        ("ipadapter", "Other", "Model", True),  # a custom pack's folder: no table entry, no constraint
        (None, "LORA", "Model", True),
    ],
)
def test_misfit_follows_one_table_when_folder_model_and_file_types_vary(folder, model_type, file_type, fits):
    hit = FileHit({"type": model_type}, {}, {"type": file_type})
    assert (hit.misfit(folder) is None) is fits


def test_search_needs_access_when_version_is_in_early_access(backend, civitai_server):
    result = backend.search(ModelQuery("fresh_style.safetensors", "loras"))
    assert result.status is Status.NEEDS_ACCESS
    assert result.details["access"]["page"] == "https://civitai.com/models/1010?modelVersionId=2010"
    assert result.details["access"]["token"] == "CIVITAI_API_KEY"
    assert "early access" in result.reason
    # The fake speaks what the real one does: that version's download is refused.
    http = HttpClient(fast_settings())
    refused = http.request("GET", f"{civitai_server.url}/api/download/models/2010", follow_redirects=False)
    assert refused.status_code == 403 and refused.json()["error"] == "Early Access"


@pytest.mark.parametrize(
    ("version", "now", "locked"),
    [
        ({"availability": "EarlyAccess"}, NOW, True),
        ({"availability": "Public"}, NOW, False),
        ({"earlyAccessEndsAt": "2025-10-30T00:00:00.000Z"}, NOW, True),
        ({"earlyAccessEndsAt": "2025-10-01T00:00:00.000Z"}, NOW, False),
        ({"earlyAccessTimeFrame": 14, "publishedAt": "2025-10-20T00:00:00Z"}, NOW, True),
        ({"earlyAccessTimeFrame": 14, "publishedAt": "2025-09-01T00:00:00Z"}, NOW, False),
    ],
)
def test_early_access_reads_every_field_when_civitai_answers_old_or_new_shapes(version, now, locked):
    assert (FileHit({}, version, {}).early_access(now) is not None) is locked


def test_decide_prefers_public_copy_when_same_file_is_also_in_early_access():
    sha = sha256_of("same").upper()
    public = FileHit(
        {"id": 1, "type": "LORA"}, {"id": 11, "availability": "Public"}, make_file(1, "x.safetensors", "same")
    )
    early = FileHit(
        {"id": 2, "type": "LORA"}, {"id": 12, "availability": "EarlyAccess"}, make_file(2, "x.safetensors", "same")
    )
    query = ModelQuery("x.safetensors", "loras", declarations=(Declaration("x.safetensors", hash=sha),))
    assert decide(query, [early, public], now=NOW).details["civitai"]["version_id"] == 11
    assert decide(query, [early], now=NOW).status is Status.NEEDS_ACCESS


def test_search_needs_access_when_workflow_declares_early_access_download_url(backend):
    declaration = Declaration("fresh_style.safetensors", url="https://civitai.com/api/download/models/2010")
    result = backend.search(ModelQuery("fresh_style.safetensors", "loras", declarations=(declaration,)))
    assert result.status is Status.NEEDS_ACCESS
    assert result.details["access"]["page"] == "https://civitai.com/models/1010?modelVersionId=2010"
