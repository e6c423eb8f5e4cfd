"""Fixtures of the download tests: a byte server, files with real content, a downloader that does not wait."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman.download.fetch import Downloader, Settings
from tests.fakes.byte_server import ByteServer
from tests.helpers.model_files import Recorder


@pytest.fixture
def server() -> Iterator[ByteServer]:
    with ByteServer() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_downloader(sleeps: list[float]):  # type: ignore[no-untyped-def]
    def make(**kwargs: object) -> Downloader:
        settings = kwargs.pop("settings", Settings(min_free_bytes=0, max_attempts=4, read_timeout=5.0))
        return Downloader(settings=settings, sleep=sleeps.append, progress=Recorder(), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "ComfyUI" / "models"
    (path / "loras").mkdir(parents=True)
    return path
