"""What the verify reads of the search's files (``verify_inputs.search_basis``): the FOUND answers of
search.json and the tasks of the download queue, and nothing else the search rewrites."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfywatchman.stages import verify_inputs


def _search(state: Path, results: list[dict[str, object]], generated_at: str = "2026-01-01T00:00:00+00:00") -> None:
    lines = ",\n".join(json.dumps(r, separators=(",", ":"), sort_keys=True) for r in results)
    head = json.dumps({"cycle_id": "c", "generated_at": generated_at}, separators=(",", ":"))[:-1]
    (state / "search.json").write_text(f'{head},"results":[\n{lines}\n],"counts":{{}}}}\n', encoding="utf-8")


def _queue(state: Path, tasks: list[dict[str, object]], cycle_id: str = "c") -> None:
    document = {"cycle_id": cycle_id, "generated_at": "2026-01-01T00:00:00+00:00", "tasks": tasks}
    (state / "download_queue.json").write_text(json.dumps(document, indent=2, sort_keys=True), encoding="utf-8")


FOUND = {"name": "a.safetensors", "status": "FOUND", "sha256": "ab" * 32, "url": "https://x/a", "size": 3}
NOT_SEARCHED = {"name": "b.safetensors", "status": "NOT_SEARCHED"}


def test_the_basis_stays_for_answers_that_are_not_found_and_for_a_new_head(tmp_path: Path) -> None:
    missing = verify_inputs.search_basis(tmp_path)
    _search(tmp_path, [FOUND])
    _queue(tmp_path, [{"path": "loras/a.safetensors"}])
    basis = verify_inputs.search_basis(tmp_path)
    assert basis != missing
    _search(tmp_path, [FOUND, NOT_SEARCHED], generated_at="2026-01-02T00:00:00+00:00")
    _queue(tmp_path, [{"path": "loras/a.safetensors"}], cycle_id="next")
    assert verify_inputs.search_basis(tmp_path) == basis


def test_the_basis_moves_with_a_found_answer_or_a_task(tmp_path: Path) -> None:
    _search(tmp_path, [FOUND])
    _queue(tmp_path, [])
    basis = verify_inputs.search_basis(tmp_path)
    _search(tmp_path, [{**FOUND, "size": 4}])
    assert verify_inputs.search_basis(tmp_path) != basis
    _search(tmp_path, [FOUND])
    assert verify_inputs.search_basis(tmp_path) == basis
    _queue(tmp_path, [{"path": "loras/a.safetensors"}])
    assert verify_inputs.search_basis(tmp_path) != basis


def test_a_search_json_in_another_layout_counts_whole(tmp_path: Path) -> None:
    document = {"cycle_id": "c", "generated_at": "t", "results": [NOT_SEARCHED], "counts": {}}
    (tmp_path / "search.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    basis = verify_inputs.search_basis(tmp_path)
    document["generated_at"] = "later"
    (tmp_path / "search.json").write_text(json.dumps(document, indent=2), encoding="utf-8")
    assert verify_inputs.search_basis(tmp_path) != basis


def test_the_basis_kept_with_the_files_identities_is_taken_while_they_are_the_same_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _search(tmp_path, [FOUND])
    _queue(tmp_path, [])
    made = []
    real = verify_inputs.search_basis
    monkeypatch.setattr(verify_inputs, "search_basis", lambda state: made.append(state) or real(state))
    first = verify_inputs.search_files(tmp_path, None)
    assert len(made) == 1 and first["basis"] == real(tmp_path)
    kept = json.loads(json.dumps(first))  # as verify_inputs.json keeps it
    assert verify_inputs.search_files(tmp_path, kept) == first and len(made) == 1  # two stats, no read
    _search(tmp_path, [FOUND, NOT_SEARCHED])  # written again: another file, even with the same FOUND answers
    again = verify_inputs.search_files(tmp_path, kept)
    assert len(made) == 2 and again["basis"] == first["basis"] and again["identity"] != first["identity"]
    assert verify_inputs.search_files(tmp_path, {"identity": again["identity"], "basis": 7})["basis"] == first["basis"]
