"""The catalogue names every artifact once: its schemas exist with their $id, the README's table is its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfywatchman import artifacts, catalogue, resources
from comfywatchman.stages import ON_REQUEST, ORDER

REPO = Path(__file__).resolve().parents[2]
# Schemas of things that are not files a cycle writes: the user's config and an LLM's answer.
NOT_ARTIFACTS = {"config", "qwen_answer"}


def test_every_schema_file_is_an_artifact_schema_or_a_known_input() -> None:
    on_disk = {p.name.removesuffix(".schema.json") for p in resources.SCHEMAS_DIR.glob("*.schema.json")}
    named = {a.schema for a in catalogue.ARTIFACTS if a.schema}
    assert named <= on_disk
    assert on_disk - named == NOT_ARTIFACTS


def test_every_schema_states_its_id_under_one_base() -> None:
    for path in resources.SCHEMAS_DIR.glob("*.schema.json"):
        assert json.loads(path.read_text())["$id"] == artifacts.SCHEMA_BASE + path.name


def test_the_json_lines_files_have_a_schema_for_their_lines() -> None:
    lines = {a.path: a.schema for a in catalogue.ARTIFACTS if a.kind == "jsonl"}
    assert lines == {
        "state/intake_log.jsonl": "intake_log_entry",
        "state/cycles.jsonl": "cycle",
        "log/structured.log": "structured_log_entry",
    }


def test_every_writer_and_reader_is_a_stage_the_cycle_or_the_loop() -> None:
    known = {*ORDER, *ON_REQUEST, catalogue.CYCLE, catalogue.LOOP}
    for item in catalogue.ARTIFACTS:
        assert set(item.writers) <= known and set(item.readers) <= known, item.key
        assert item.writers, item.key


def test_for_relative_path_finds_stage_runs_and_nothing_else() -> None:
    assert catalogue.for_relative_path("state/runs/scan.json").key == "stage_run"  # type: ignore[union-attr]
    assert catalogue.for_relative_path("state/scan.json").key == "scan"  # type: ignore[union-attr]
    assert catalogue.for_relative_path("state/runs/a/b.json") is None
    assert catalogue.for_relative_path("state/cycle.lock") is None


def test_path_places_an_artifact_in_the_home_and_refuses_unknown_keys(tmp_path: Path) -> None:
    assert catalogue.artifact("stage_run").locate(tmp_path, "gate") == tmp_path / "state" / "runs" / "gate.json"
    with pytest.raises(KeyError, match="no artifact 'nope'"):
        catalogue.artifact("nope")
    with pytest.raises(ValueError, match="not JSON"):
        catalogue.schema("requirements")


def test_the_readme_table_is_the_catalogues() -> None:
    # Out of date? python tools/artifact_table.py rewrites it.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert catalogue.readme_table() in readme


def test_in_state_places_state_artifacts_and_refuses_the_others(tmp_path: Path) -> None:
    assert catalogue.in_state(tmp_path, "cycles") == tmp_path / "cycles.jsonl"
    assert catalogue.in_state(tmp_path, "stage_run", "scan") == tmp_path / "runs" / "scan.json"
    with pytest.raises(ValueError, match="not in the state folder"):
        catalogue.in_state(tmp_path, "structured_log")


def test_files_by_folder_names_every_artifact_in_its_folder(tmp_path: Path) -> None:
    found = catalogue.files_by_folder(tmp_path, ORDER)
    assert {"scan.json", "intake_log.jsonl", "requirements.pack", "cycles.jsonl"} <= found[tmp_path / "state"]
    assert found[tmp_path / "state" / "runs"] == {f"{stage}.json" for stage in ORDER}
    assert found[tmp_path / "log"] == {"structured.log"}
    assert found[tmp_path / "output" / "reports" / "status"] == {"master_status.json", "master_status.md"}
