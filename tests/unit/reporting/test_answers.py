"""The search's answers as the report keeps them: compact, shared when equal, and kept between cycles while
search.json's results are unchanged (a new generated_at or cycle id changes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import answers


def result(name: str, status: str = "NOT_SEARCHED", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "loras",
        "status": status,
        "source": "search",
        "evidence": "none",
        "url": None,
        "sha256": None,
        "size": None,
        "reason": "qwen: offline",
        "candidates": [],
        "details": {},
        "attempts": [],
        "workflows": [],
        **fields,
    }


def search_json(path: Path, results: list[dict[str, Any]], cycle_id: str = "c1") -> None:
    counts = dict.fromkeys(("FOUND", "NEEDS_ACCESS", "UNCERTAIN", "NOT_FOUND", "ERROR", "INVALID_FILENAME"), 0)
    document = {
        "cycle_id": cycle_id,
        "generated_at": "2026-11-30T12:00:00+00:00",
        "offline": True,
        "backend_order": ["qwen"],
        "results": results,
        "counts": {**counts, "NOT_SEARCHED": len(results)},
        "requests": {},
        "cache_hits": 0,
    }
    artifacts.write(path, document, "search")


RESULTS = [
    result("a.safetensors"),
    result("B.safetensors"),
    result("c.safetensors", "FOUND", url="https://huggingface.co/o/r/resolve/main/c.safetensors", size=5)
    | {"details": {"huggingface": {"gated": True}}},
]


def test_equal_answers_are_kept_once_and_a_gated_file_digests_apart() -> None:
    found = answers.from_results(RESULTS)
    assert found.get(("loras", "a.safetensors")) is found.get(("loras", "b.safetensors"))  # one shared answer
    assert found.gated == frozenset({("loras", "c.safetensors")})
    assert found.digest(("loras", "a.safetensors")) == found.digest(("loras", "b.safetensors"))
    assert found.digest(("loras", "c.safetensors")).endswith(b"g")
    assert found.digest(("loras", "missing")) == b"-"


def test_kept_answers_stand_while_the_results_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, kept = tmp_path / "search.json", tmp_path / answers.KEPT
    search_json(path, RESULTS)
    first = answers.load(path, kept)
    assert kept.is_file()
    search_json(path, RESULTS, cycle_id="c2")  # written again by a later cycle, the same answers

    def unread(_path: Path) -> None:
        raise AssertionError("search.json read again")

    with monkeypatch.context() as patched:
        patched.setattr(answers, "_results", unread)
        again = answers.load(path, kept)
    assert (again.results, again.gated, again.uncertain, again.offline) == (
        first.results,
        first.gated,
        first.uncertain,
        first.offline,
    )
    assert all(again.digest(k) == first.digest(k) for k in first.results)

    search_json(path, [*RESULTS[:2], result("c.safetensors", "NOT_FOUND")])
    changed = answers.load(path, kept)
    assert changed.results[("loras", "c.safetensors")]["status"] == "NOT_FOUND"
    kept.write_bytes(kept.read_bytes()[:-20])  # torn: read search.json again
    assert answers.load(path, kept).results == changed.results
