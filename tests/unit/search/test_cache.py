"""The search cache: TTLs per status, never caching failures, keys, atomic persistence."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from comfywatchman import artifacts
from comfywatchman.search.base import Candidate, Declaration, Evidence, ModelQuery, SearchResult, Status
from comfywatchman.search.cache import SearchCache, cache_key
from tests.unit.search.conftest import NOW, make_config

BACKENDS = ("qwen", "civitai")
QUERY = ModelQuery("SDXL\\Add_Detail.safetensors", "loras")


def result(status: Status, **kwargs) -> SearchResult:
    return SearchResult(name=QUERY.name, type="loras", status=status, source="civitai", **kwargs)


@pytest.fixture
def cache(tmp_path):
    return SearchCache(tmp_path / "state" / "search_cache.json", ttl_hours=24, negative_ttl_hours=6)


def test_get_returns_found_when_within_ttl(cache):
    found = result(
        Status.FOUND,
        evidence=Evidence.EXACT_FILENAME,
        url="https://x",
        sha256="ab" * 32,
        size=5,
        details={"civitai": {"model_id": 1}},
        candidates=[Candidate("civitai", "n", None, Evidence.SIMILAR_NAME, "why")],
    )
    assert cache.put(QUERY, BACKENDS, found, NOW)
    again = cache.get(QUERY, BACKENDS, NOW + timedelta(hours=23))
    assert again is not None and again.to_json() | {"details": {}} == found.to_json() | {"details": {}}
    assert again.details["civitai"] == {"model_id": 1} and "cache" in again.details
    assert cache.get(QUERY, BACKENDS, NOW + timedelta(hours=24)) is None


def test_get_uses_negative_ttl_when_not_found(cache):
    cache.put(QUERY, BACKENDS, result(Status.NOT_FOUND), NOW)
    assert cache.get(QUERY, BACKENDS, NOW + timedelta(hours=5)) is not None
    assert cache.get(QUERY, BACKENDS, NOW + timedelta(hours=6, seconds=1)) is None


def test_put_keeps_uncertain_for_the_full_ttl_when_called(cache):
    cache.put(QUERY, BACKENDS, result(Status.UNCERTAIN), NOW)
    assert cache.get(QUERY, BACKENDS, NOW + timedelta(hours=20)).status is Status.UNCERTAIN


@pytest.mark.parametrize("status", [Status.ERROR, Status.NOT_SEARCHED, Status.INVALID_FILENAME])
def test_put_refuses_when_status_must_be_retried(cache, status):
    assert not cache.put(QUERY, BACKENDS, result(status), NOW)
    assert cache.get(QUERY, BACKENDS, NOW) is None


def test_put_refuses_when_ttl_is_zero(tmp_path):
    cache = SearchCache(tmp_path / "c.json", ttl_hours=0, negative_ttl_hours=0)
    assert not cache.put(QUERY, BACKENDS, result(Status.FOUND), NOW)


def test_cache_key_ignores_case_and_separators_but_not_backends_or_hash():
    same = ModelQuery("sdxl/add_detail.SAFETENSORS", "loras")
    assert cache_key(QUERY, BACKENDS) == cache_key(same, BACKENDS)
    assert cache_key(QUERY, BACKENDS) != cache_key(QUERY, ("huggingface",))
    hashed = ModelQuery(QUERY.name, "loras", declarations=(Declaration(QUERY.name, hash="ab" * 32),))
    assert cache_key(QUERY, BACKENDS) != cache_key(hashed, BACKENDS)


def test_get_returns_the_workflow_spelling_when_key_matches_another_case(cache):
    cache.put(QUERY, BACKENDS, result(Status.FOUND), NOW)
    other = ModelQuery("sdxl/add_detail.SAFETENSORS", "loras")
    assert cache.get(other, BACKENDS, NOW).name == "sdxl/add_detail.SAFETENSORS"


def test_save_writes_valid_file_that_a_new_cache_reads_when_called(cache, tmp_path):
    cache.put(QUERY, BACKENDS, result(Status.FOUND, sha256="ab" * 32), NOW)
    assert cache.save(NOW)
    artifacts.read(cache.path, "search_cache")
    assert [p.name for p in cache.path.parent.iterdir()] == ["search_cache.json"]  # no temp file left
    reloaded = SearchCache(cache.path, ttl_hours=24, negative_ttl_hours=6)
    assert reloaded.get(QUERY, BACKENDS, NOW).sha256 == "ab" * 32
    assert not reloaded.save(NOW)  # unchanged: no rewrite


def test_save_drops_expired_entries_when_now_given(cache):
    cache.put(QUERY, BACKENDS, result(Status.NOT_FOUND), NOW)
    cache.save(NOW)
    cache.save(NOW + timedelta(hours=7))
    assert json.loads(cache.path.read_text())["entries"] == {}


def test_load_starts_empty_when_file_is_torn(tmp_path, caplog):
    path = tmp_path / "search_cache.json"
    path.write_text('{"version": 1, "entries": {', encoding="utf-8")
    caplog.set_level(logging.WARNING)
    cache = SearchCache(path, ttl_hours=24, negative_ttl_hours=6)
    assert cache.entries == {} and "empty search cache" in caplog.text


def test_from_config_uses_state_dir_and_ttls_when_given(tmp_path):
    config = make_config(tmp_path, search={"cache_ttl_hours": 1.0, "negative_ttl_hours": 0.5})
    cache = SearchCache.from_config(config)
    assert cache.path == tmp_path / "state" / "search_cache.json"
    assert cache.ttl == timedelta(hours=1) and cache.negative_ttl == timedelta(minutes=30)
