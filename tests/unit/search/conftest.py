"""Fixtures for the search tests: the fake services, a fast HTTP client and a Config pointing at the fakes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.config import Config
from comfywatchman.search.base import SearchContext
from comfywatchman.search.http import HttpClient, HttpSettings
from tests.fakes.chat_server import FakeChat
from tests.fakes.civitai_server import FakeCivitai
from tests.fakes.hf_server import FakeHub
from tests.helpers.config import config_with

NOW = datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc)
# Tiny delays so retry ladders cost milliseconds; a read timeout short enough for the "slow" fake.
FAST_SEARCH: dict[str, Any] = {
    "backend_order": ["qwen", "civitai"],
    "offline": False,
    "cache_ttl_hours": 24.0,
    "negative_ttl_hours": 6.0,
    "connect_timeout_seconds": 1.0,
    "read_timeout_seconds": 0.5,
    "trusted_hosts": ["huggingface.co", "civitai.com"],
    "max_attempts": 3,
    "backoff_base_seconds": 0.001,
    "backoff_max_seconds": 0.005,
    "retry_after_max_seconds": 0.0,
    "min_interval_seconds": 0.0,
    "max_requests_per_cycle": 500,
    "network_deadline_seconds": 60.0,
    "request_timeout_seconds": 5.0,
    "host_timeouts_before_giving_up": 2,
    "max_response_mb": 4.0,
}


def fast_settings(**changes: Any) -> HttpSettings:
    base = HttpSettings.from_config(FAST_SEARCH)
    return base._replace(**changes)


def make_config(
    home: Path,
    civitai: FakeCivitai | None = None,
    hub: FakeHub | None = None,
    qwen: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    search: dict[str, Any] | None = None,
) -> Config:
    """Return the real defaults pointed at the fakes (a closed port where none is given), validated."""
    overrides: dict[str, Any] = {
        "search": {**FAST_SEARCH, **(search or {})},
        "civitai": {"base_url": civitai.url if civitai else "http://127.0.0.1:9"},
        "huggingface": {
            "endpoint": hub.url if hub else "http://127.0.0.1:9",
            "authors": ["Comfy-Org", "city96", "black-forest-labs"],
        },
        "qwen": qwen if qwen is not None else {"transport": "auto", "command": "qwen-not-installed-here"},
    }
    return config_with(home, overrides, secrets=secrets)


def make_context(config: Config, http: HttpClient | None = None) -> SearchContext:
    return SearchContext(config=config, now=NOW, http=http or HttpClient.from_config(config, sleep=lambda s: None))


@pytest.fixture(autouse=True)
def _no_hub_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's HF_ENDPOINT or tokens must not point tests at the real services.
    for name in (
        "HF_ENDPOINT",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "CIVITAI_API_KEY",
        "QWEN_API_KEY",
        "DASHSCOPE_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def civitai_server() -> Iterator[FakeCivitai]:
    with FakeCivitai() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def hub_server() -> Iterator[FakeHub]:
    with FakeHub() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
def chat_server() -> Iterator[FakeChat]:
    with FakeChat() as server:
        yield server  # type: ignore[misc]
