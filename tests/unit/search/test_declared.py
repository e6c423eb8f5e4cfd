"""Resolution from the workflow's own declarations: proof only when host and file name check out."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfywatchman.search import declared
from comfywatchman.search.base import Declaration, Evidence, ModelQuery, SearchResult, Status
from comfywatchman.search.declared import verify
from comfywatchman.search.http import HttpClient, RemoteError
from tests.fakes import FakeServer, Recorded, Reply
from tests.unit.search.conftest import fast_settings

TRUSTED = ["huggingface.co", "civitai.com", "civitai.red"]
HF = "https://huggingface.co/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors"


def _query(name: str, *decls: Declaration, folder: str = "diffusion_models") -> ModelQuery:
    return ModelQuery(name, folder, decls)


def test_resolve_is_found_for_trusted_host_and_same_file_name() -> None:
    result = declared.resolve(
        _query("flux1-schnell.safetensors", Declaration("flux1-schnell.safetensors", HF, "diffusion_models")),
        TRUSTED,
    )
    assert result is not None and result.status is Status.FOUND and result.evidence is Evidence.DECLARED
    assert result.url == HF and result.type == "diffusion_models"


def test_resolve_compares_file_name_case_insensitively_and_ignores_subfolder() -> None:
    result = declared.resolve(_query("FLUX\\Flux1-Schnell.SAFETENSORS", Declaration("x", HF)), TRUSTED)
    assert result is not None and result.status is Status.FOUND


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://example.com/flux1-schnell.safetensors", "not a trusted host"),
        ("https://huggingface.co.evil.net/flux1-schnell.safetensors", "not a trusted host"),
        ("https://huggingface.co/x/resolve/main/flux1-dev.safetensors", "names 'flux1-dev.safetensors'"),
        ("ftp://huggingface.co/flux1-schnell.safetensors", "not a trusted host"),
    ],
)
def test_resolve_is_uncertain_when_declaration_does_not_check_out(url: str, words: str) -> None:
    result = declared.resolve(
        _query("flux1-schnell.safetensors", Declaration("flux1-schnell.safetensors", url)), TRUSTED
    )
    assert result is not None and result.status is Status.UNCERTAIN
    assert words in result.candidates[0].reason


def test_resolve_is_none_without_declared_url() -> None:
    assert declared.resolve(_query("a.safetensors", Declaration("a.safetensors", None, "vae")), TRUSTED) is None


def test_resolve_keeps_declared_sha256() -> None:
    sha = "AB" * 32
    result = declared.resolve(
        _query(
            "flux1-schnell.safetensors",
            Declaration("flux1-schnell.safetensors", HF, hash=sha, hash_type="sha256"),
        ),
        TRUSTED,
    )
    assert result is not None and result.sha256 == sha.lower()


def test_url_filename_decodes_percent_escapes() -> None:
    assert declared.url_filename("https://civitai.com/a/My%20Model.safetensors?download=true") == "My Model.safetensors"


def test_service_url_points_known_hosts_at_configured_mirrors(tmp_path: Path) -> None:
    from tests.helpers.config import config_with

    config = config_with(
        tmp_path,
        {"civitai": {"base_url": "http://127.0.0.1:8001"}, "huggingface": {"endpoint": "http://127.0.0.1:8002/hf"}},
    )
    assert declared.service_url("https://civitai.com/api/download/models/9?type=Model", config) == (
        "http://127.0.0.1:8001/api/download/models/9?type=Model"
    )
    assert declared.service_url(HF, config) == (
        "http://127.0.0.1:8002/hf/Comfy-Org/flux1-schnell/resolve/main/flux1-schnell.safetensors"
    )
    assert declared.service_url("https://example.com/x.pth", config) == "https://example.com/x.pth"


# -- issue 11: a declared URL nobody can download from is no download source --------------------------------


@pytest.mark.parametrize(
    ("name", "url", "page", "token"),
    [
        (
            "flux1-dev.safetensors",
            "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors",
            "https://huggingface.co/black-forest-labs/FLUX.1-dev",
            "HF_TOKEN",
        ),
    ],
    ids=["gated-hub-repo"],
)
def test_verify_needs_access_when_declared_url_refuses_download(
    tmp_path: Path, civitai_server, hub_server, name: str, url: str, page: str, token: str
) -> None:
    from comfywatchman.search import policy
    from comfywatchman.search.http import HttpClient
    from tests.unit.search.conftest import make_config

    config = make_config(tmp_path, civitai_server, hub_server)
    found = declared.resolve(_query(name, Declaration(name, url=url)), TRUSTED)
    assert found is not None and found.status is Status.FOUND  # offline, the declaration looks like proof
    checked = declared.verify(found, HttpClient.from_config(config, sleep=lambda s: None), config)
    assert checked.status is Status.NEEDS_ACCESS and not policy.may_queue(checked)
    assert checked.details["access"]["page"] == page and checked.details["access"]["token"] == token


class Outage(FakeServer):
    """A file server in trouble: /api answers 503; every file path answers a bare 404, or the Hub's
    ``EntryNotFound`` 404 under /hub/."""

    def route(self, request: Recorded) -> Reply:
        if request.path.startswith("/api"):
            return Reply(503, {"error": "busy"})
        if request.path.startswith("/hub/"):
            return Reply(404, None, {"X-Error-Code": "EntryNotFound"})
        return Reply(404, None)


def declared_found(url: str) -> SearchResult:
    return SearchResult("x.safetensors", "loras", Status.FOUND, "declared", Evidence.DECLARED, url=url)


def test_verify_keeps_a_404_from_a_healthy_host_as_a_dead_link() -> None:
    with Outage() as server:
        checked = verify(declared_found(f"{server.url}/f/x.safetensors"), HttpClient(fast_settings()))
    assert checked.status is Status.UNCERTAIN and "link is dead" in checked.reason


def test_verify_does_not_believe_a_bare_404_from_a_failing_host() -> None:
    with Outage() as server:
        http = HttpClient(fast_settings(max_attempts=2), sleep=lambda s: None)
        with pytest.raises(RemoteError):
            http.request("GET", f"{server.url}/api/models")  # the outage shows on another request first
        checked = verify(declared_found(f"{server.url}/f/x.safetensors"), http)
    assert checked.status is Status.FOUND
    assert str(checked.details["url_check"]).startswith("not checked: HEAD 404")  # so the resolver caches nothing


def test_verify_believes_the_hubs_entry_not_found_even_during_an_outage() -> None:
    with Outage() as server:
        http = HttpClient(fast_settings(max_attempts=2), sleep=lambda s: None)
        with pytest.raises(RemoteError):
            http.request("GET", f"{server.url}/api/models")
        checked = verify(declared_found(f"{server.url}/hub/x.safetensors"), http)
    assert checked.status is Status.UNCERTAIN
