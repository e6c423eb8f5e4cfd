"""The backend template: the file-name check, error isolation and RemoteError -> ERROR live in the base class;
a backend supplies its lookup only."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from comfywatchman.search.base import ModelQuery, SearchBackend, SearchResult, Status
from comfywatchman.search.http import RemoteError
from tests.unit.search.conftest import make_config, make_context


class Scripted(SearchBackend):
    """Answers, or raises, what the test tells it to, and counts its lookups."""

    name = "scripted"
    raises: ClassVar[BaseException | None] = None

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lookups = 0

    def lookup(self, query: ModelQuery) -> SearchResult:
        self.lookups += 1
        if self.raises is not None:
            raise self.raises
        return self.result(query, Status.NOT_FOUND, "looked")


def _backend(tmp_path: Path, raises: BaseException | None = None) -> Scripted:
    backend = Scripted(make_context(make_config(tmp_path)))
    backend.raises = raises
    return backend


def test_search_refuses_invalid_file_name_without_a_lookup(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    result = backend.search(ModelQuery("../../etc/passwd", "loras"))
    assert result.status is Status.INVALID_FILENAME and backend.lookups == 0


def test_search_turns_remote_error_into_error_naming_the_backend(tmp_path: Path) -> None:
    result = _backend(tmp_path, RemoteError("host down", "connection")).search(ModelQuery("a.safetensors", "loras"))
    assert result.status is Status.ERROR and result.reason == "scripted: host down" and result.source == "scripted"


def test_search_turns_a_crash_into_error_and_logs_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    result = _backend(tmp_path, KeyError("x")).search(ModelQuery("a.safetensors", "loras"))
    assert result.status is Status.ERROR and result.reason == "backend crashed: KeyError"
    assert "search backend scripted failed on a.safetensors" in caplog.text


def test_search_returns_the_lookup_answer_when_it_succeeds(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assert backend.search(ModelQuery("a.safetensors", "loras")).reason == "looked" and backend.lookups == 1


def test_builtin_backends_come_from_the_entry_point_group() -> None:
    from importlib.metadata import entry_points

    from comfywatchman.search import registry

    named = {e.name for e in entry_points(group="comfywatchman.backends")}
    assert {"declared", "manager_model_list", "civitai", "huggingface", "qwen"} <= named
    assert registry.known_backends() >= {"civitai", "huggingface", "qwen"}
    assert [cls.name for cls in registry.first_sources()] == ["declared", "manager_model_list"]
    assert not any(cls.needs_network for cls in registry.first_sources())


def test_http_client_and_registry_import_no_backend() -> None:
    import subprocess
    import sys

    code = (
        "import sys, comfywatchman.config, comfywatchman.search.http, comfywatchman.search.registry;"
        "print(sorted(m for m in sys.modules if m.split('.')[-1] in "
        "('civitai', 'huggingface', 'qwen', 'declared', 'model_list', 'registry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['comfywatchman.search.registry']"
