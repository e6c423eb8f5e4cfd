"""The last search's answers: a result's text without and with its workflows, its status, and which answers of
the last search.json are taken again (only those made under the same basis, from the file as it was written)."""

from __future__ import annotations

from pathlib import Path

import orjson

from comfywatchman import artifacts, stage_inputs
from comfywatchman.search import reuse
from comfywatchman.search.base import Declaration, ModelQuery, SearchResult, Status

HEAD = {
    "cycle_id": "c1",
    "generated_at": "2026-05-01T12:00:00+00:00",
    "offline": True,
    "backend_order": ["civitai"],
    "model_list": None,
    "results": [],
    "counts": {s.value: 0 for s in Status},
    "requests": {},
    "cache_hits": 0,
}


def result_text(name: str, status: Status, paths: list[str], details: dict[str, object] | None = None) -> str:
    result = SearchResult(name, "loras", status, "search", reason="r", details=dict(details or {}))
    result.attempts = [{"backend": "civitai", "status": "NOT_SEARCHED", "reason": "offline"}]
    item = {**result.to_json(), "workflows": paths}
    return artifacts.part_text(item, "search", "result", "test")


def test_a_result_text_comes_apart_at_its_own_workflows_and_back() -> None:
    # A nested "workflows" key and workflow paths that spell the separator, quotes and all, change nothing.
    tricky = ['/w/a ,"workflows":[ b.json', '/w/"quoted".json', "/w/ü.json"]
    text = result_text("x.safetensors", Status.FOUND, tricky, {"workflows": ["nested"], "status": "NOT_FOUND"})
    prefix = reuse.without_workflows(text)
    assert prefix is not None and not prefix.endswith("}")
    assert reuse.with_workflows(prefix, tricky) == text
    assert orjson.loads(reuse.with_workflows(prefix, ["/w/other.json"]))["workflows"] == ["/w/other.json"]
    assert reuse.status_of(prefix) == "FOUND"  # not the attempt's, not the details' status
    assert reuse.without_workflows('{"name":"x"}') is None


def test_the_query_key_changes_with_name_folder_and_declarations() -> None:
    declared = (Declaration("x.safetensors", "https://huggingface.co/o/r/resolve/main/x.safetensors"),)
    base = ModelQuery("x.safetensors", "loras", declared, ("/w/a.json",))
    assert reuse.query_key(base) == reuse.query_key(ModelQuery("x.safetensors", "loras", declared, ("/w/b.json",)))
    assert reuse.query_key(base) != reuse.query_key(ModelQuery("X.safetensors", "loras", declared))
    assert reuse.query_key(base) != reuse.query_key(ModelQuery("x.safetensors", "vae", declared))
    assert reuse.query_key(base) != reuse.query_key(ModelQuery("x.safetensors", "loras"))


def write_search(state: Path, basis: str, texts: list[str], keys: list[str | None]) -> Path:
    path = state / "search.json"
    artifacts.write_assembled(path, HEAD, "results", texts, "search")
    stage_inputs.record(state, "search", "c1", "fp", [path], None, {}, "", {"basis": basis, "keys": keys})
    return path


def test_the_answers_of_the_last_search_are_taken_when_basis_and_file_are_as_recorded(tmp_path: Path) -> None:
    texts = [result_text(n, Status.NOT_SEARCHED, [f"/w/{n}.json"]) for n in ("a.pt", "b.pt", "c.pt")]
    path = write_search(tmp_path, "B", texts, ["ka", None, "kc"])

    found = reuse.previous_answers(tmp_path, path, "B", {"ka", "kb", "kc"})
    assert set(found) == {"ka", "kc"}  # "b.pt" was recorded as asked again: never taken
    assert reuse.with_workflows(found["kc"], ["/w/c.pt.json"]) == texts[2]
    assert reuse.previous_answers(tmp_path, path, "B", {"kc"}).keys() == {"kc"}
    assert reuse.previous_answers(tmp_path, path, "other basis", {"ka"}) == {}


def test_a_search_json_not_as_written_gives_nothing(tmp_path: Path) -> None:
    texts = [result_text(n, Status.NOT_SEARCHED, ["/w/x.json"]) for n in ("a.pt", "b.pt")]
    path = write_search(tmp_path, "B", texts, ["ka", "kb"])
    # Rewritten with the same results in one line (another layout): its stat no longer is the recorded one.
    artifacts.write(path, artifacts.read(path, "search"), "search", indent=None)
    assert reuse.previous_answers(tmp_path, path, "B", {"ka"}) == {}
    # Keys that do not match the lines (a record of another file): nothing rather than the wrong answers.
    path = write_search(tmp_path, "B", texts, ["ka"])
    assert reuse.previous_answers(tmp_path, path, "B", {"ka"}) == {}
    path = write_search(tmp_path, "B", texts, ["ka", "kb", "kc"])
    assert reuse.previous_answers(tmp_path, path, "B", {"ka"}) == {}
    assert reuse.previous_answers(tmp_path / "none", tmp_path / "none.json", "B", {"ka"}) == {}
