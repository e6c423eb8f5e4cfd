"""Two search cycles over every fake at once: the right status per case, zero false FOUND, then zero requests.

``run_cycle`` below drives the search stage's own Resolver (declarations, cache, backends in order, the
decision policy) with one HttpClient, so the backends, the cache and the HTTP client are proven together
with the policy that decides for real.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.search.base import Declaration, ModelQuery, SearchContext, SearchResult, Status
from comfywatchman.search.cache import SearchCache
from comfywatchman.search.http import HttpClient
from comfywatchman.search.registry import backend_class
from comfywatchman.stages.context import StageContext
from comfywatchman.stages.search import Resolver
from tests.fakes.civitai_server import sha256_of
from tests.fakes.hf_server import lfs_sha
from tests.unit.search.conftest import NOW, make_config

ORDER = ("qwen", "civitai", "huggingface")

# name, folder, declared sha256, expected status, the sha256 of the true file (None: nowhere to be had)
CASES: list[tuple[str, str, str | None, Status, str | None]] = [
    ("add_detail.safetensors", "loras", None, Status.FOUND, sha256_of("add_detail.safetensors").lower()),
    (
        "EasyNegative.safetensors",
        "embeddings",
        None,
        Status.FOUND,
        sha256_of("easynegative.safetensors").lower(),
    ),
    ("juggernaut_xl_v9_rundiffusion.safetensors", "checkpoints", None, Status.UNCERTAIN, None),
    (
        "juggernaut_xl_v9_rundiffusion.safetensors",
        "checkpoints",
        sha256_of("juggernaut-v9").lower(),
        Status.FOUND,
        sha256_of("juggernaut-v9").lower(),
    ),
    (
        "flux_realism_lora.safetensors",
        "loras",
        None,
        Status.FOUND,
        sha256_of("flux_realism_lora.safetensors").lower(),
    ),
    ("old_style.safetensors", "loras", None, Status.NOT_FOUND, None),
    ("common_name.safetensors", "loras", None, Status.UNCERTAIN, None),
    ("wan2.1_t2v_14B_fp8_scaled.safetensors", "diffusion_models", None, Status.FOUND, lfs_sha("wan14")),
    # In a gated repo whose terms the token's account has not accepted: proven, but no download source.
    ("flux1-dev.safetensors", "diffusion_models", None, Status.NEEDS_ACCESS, lfs_sha("flux1dev")),
    ("flux1-dev-Q5_K_S.gguf", "unet", None, Status.UNCERTAIN, None),
    ("diffusion_pytorch_model.safetensors", "vae", None, Status.NOT_FOUND, None),  # generic: never FOUND
    ("zzqx_nothing_v2.safetensors", "checkpoints", None, Status.NOT_FOUND, None),
    ("../../etc/passwd", "loras", None, Status.INVALID_FILENAME, None),
]


def queries() -> list[ModelQuery]:
    return [
        ModelQuery(name, folder, declarations=(Declaration(name, hash=sha),) if sha else ())
        for name, folder, sha, _status, _truth in CASES
    ]


def run_cycle(
    config: Any, cache: SearchCache, qs: list[ModelQuery], servers: list[Any]
) -> tuple[list[SearchResult], list[int], HttpClient]:
    """Search every query through the search stage's Resolver; return the results, each one's cost, the client."""
    http = HttpClient.from_config(config, sleep=lambda s: None)
    context = SearchContext(config=config, now=NOW, http=http)
    backends = [backend_class(name)(context) for name in ORDER]
    resolver = Resolver(StageContext(config, "cycle-test", clock=lambda: NOW), backends, http, cache)
    results, costs = [], []
    for query in qs:
        before = sum(s.count for s in servers)
        results.append(resolver.resolve(query))
        costs.append(sum(s.count for s in servers) - before)
    cache.save(NOW)
    return results, costs, http


@pytest.fixture
def setup(tmp_path, civitai_server, hub_server):
    secrets = {"CIVITAI_API_KEY": "civ-SECRET-KEY-123", "HF_TOKEN": "hf_SECRET_TOKEN_456"}
    config = make_config(tmp_path, civitai_server, hub_server, secrets=secrets)
    return config, [civitai_server, hub_server], secrets


def test_cycle_gives_right_status_and_no_false_found_when_run_against_fakes(setup):
    config, servers, _ = setup
    cache = SearchCache.from_config(config)
    results, costs, http = run_cycle(config, cache, queries(), servers)
    got = [(r.name, r.status) for r in results]
    assert got == [(name, status) for name, _f, _s, status, _t in CASES]
    false_found = [
        r.name for r, case in zip(results, CASES, strict=True) if r.status is Status.FOUND and r.sha256 != case[4]
    ]
    assert false_found == []
    for r in results:
        if r.status is Status.FOUND:
            assert r.url and r.sha256 and r.size and r.type
    assert costs[-1] == 0  # INVALID_FILENAME costs no request
    assert http.total_requests == sum(costs)
    assert max(costs) <= 20
    # Issue 11: 4.08 requests per file (8 at most) before the repackager listings and tree reuse; 2.31 (5) after.
    assert sum(costs) / len(costs) <= 3.0


def test_cycle_sends_zero_requests_when_second_cycle_within_ttl(setup):
    config, servers, _ = setup
    run_cycle(config, SearchCache.from_config(config), queries(), servers)
    for server in servers:
        server.reset_log()
    later = SearchCache.from_config(config)  # read back from disk, as the next cycle does
    results, _costs, http = run_cycle(config, later, queries(), servers)
    assert sum(s.count for s in servers) == 0 and http.total_requests == 0
    assert [r.status for r in results] == [case[3] for case in CASES]
    assert later.get(queries()[0], ORDER, NOW + timedelta(hours=25)) is None


def test_cycle_keeps_secrets_out_of_results_cache_and_logs_when_tokens_set(setup, caplog):
    caplog.set_level(logging.DEBUG)
    config, (civitai, hub), secrets = setup
    results, _costs, _http = run_cycle(config, SearchCache.from_config(config), queries(), [civitai, hub])
    assert {r.headers.get("Authorization") for r in civitai.requests} == {f"Bearer {secrets['CIVITAI_API_KEY']}"}
    assert {r.headers.get("Authorization") for r in hub.requests} == {f"Bearer {secrets['HF_TOKEN']}"}
    text = json.dumps([r.to_json() for r in results]) + caplog.text
    text += (Path(config.state_dir) / "search_cache.json").read_text(encoding="utf-8")
    text += repr(config.secrets)
    for value in secrets.values():
        assert value not in text


def test_cycle_records_error_and_caches_nothing_when_civitai_is_down(tmp_path, hub_server):
    config = make_config(tmp_path, None, hub_server)  # civitai points at a closed port
    cache = SearchCache.from_config(config)
    qs = [ModelQuery("add_detail.safetensors", "loras"), ModelQuery("easynegative.safetensors", "embeddings")]
    results, _costs, http = run_cycle(config, cache, qs, [hub_server])
    assert [r.status for r in results] == [Status.ERROR, Status.ERROR]
    assert "cannot connect" in results[0].attempts[1]["reason"]
    assert "unreachable earlier this cycle" in results[1].attempts[1]["reason"]  # circuit breaker: no new tries
    assert http.request_counts()["127.0.0.1:9"] == int(config.data["search"]["max_attempts"])
    assert cache.entries == {}


def test_cycle_past_network_deadline_is_not_searched_yet_uncached_and_asked_next_cycle(
    tmp_path, civitai_server, hub_server
):
    config = make_config(tmp_path, civitai_server, hub_server, search={"network_deadline_seconds": 10.0})
    # The clock jumps past the deadline once Civitai has answered once: the Hub is never asked this cycle.
    http = HttpClient.from_config(config, sleep=lambda s: None, clock=lambda: 1000.0 if civitai_server.count else 0.0)
    context = SearchContext(config=config, now=NOW, http=http)
    backends = [backend_class(name)(context) for name in ORDER]
    cache = SearchCache.from_config(config)
    resolver = Resolver(StageContext(config, "deadline-test", clock=lambda: NOW), backends, http, cache)
    nothing = ModelQuery("zzqx_nothing_v2.safetensors", "checkpoints")  # NOT_FOUND once everything is asked
    later = ModelQuery("old_style.safetensors", "loras")
    results = [resolver.resolve(nothing), resolver.resolve(later)]
    assert [r.status for r in results] == [Status.NOT_SEARCHED, Status.NOT_SEARCHED]
    assert all(r.reason == "not searched yet (network deadline reached); next cycle" for r in results)
    assert hub_server.count == 0 and cache.entries == {}
    next_cycle, _costs, _http = run_cycle(config, SearchCache.from_config(config), [nothing, later], [civitai_server])
    assert [r.status for r in next_cycle] == [Status.NOT_FOUND, Status.NOT_FOUND]
