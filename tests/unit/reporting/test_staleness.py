"""The report reads intake.json's unavailable folders and kept workflows from the keys before its workflows
(the file's start) when it is written compact with sorted keys, and gives the same answer as reading it
whole for any other layout; a broken file gives none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.reporting import staleness


def workflow(name: str) -> dict[str, Any]:
    return {
        "acknowledged_at": "2026-12-01T04:00:00+00:00",
        "first_seen_at": "2026-12-01T03:00:00+00:00",
        "kind": "new",
        "mtime_ns": 1,
        "path": f"/w/{name}",
        "sha256": "0" * 64,
        "size": 10,
        "source": "comfyui",
        "workflow": name,
    }


def intake(unavailable: bool) -> dict[str, Any]:
    return {
        "comfyui_root": "/c",
        "cycle_id": "c1",
        "errors": [],
        "generated_at": "2026-12-01T04:00:00+00:00",
        "kept": [workflow('kept ",\\"workflows\\":[ .json')] if unavailable else [],
        "log_size": 0,
        "removed": [],
        "sources": [{"files": 3, "folders": ["/w"], "name": "comfyui"}],
        "unavailable": [{"folder": "/mnt/gone", "reason": "not mounted", "source": "comfyui", "workflows": 1}]
        if unavailable
        else [],
        "workflows": [workflow(f"{n}.json") for n in range(3)],
    }


@pytest.mark.parametrize("unavailable", [False, True])
@pytest.mark.parametrize("indent", [None, 2])
def test_the_entries_read_from_the_files_start_are_those_of_the_whole_file(
    tmp_path: Path, unavailable: bool, indent: int | None
) -> None:
    document = intake(unavailable)
    artifacts.write(tmp_path / "intake.json", document, "intake", indent=indent)
    found = staleness.intake_entries(tmp_path)
    assert found == (document["unavailable"], {w["path"] for w in document["kept"]})
    # Compact with sorted keys, the keys before the workflows are read alone; another layout is read whole.
    head = staleness._head(tmp_path / "intake.json")
    assert (head is not None) == (indent is None)
    if head is not None:
        assert head == {**document, "workflows": []}


def test_a_broken_or_missing_intake_file_gives_no_entries(tmp_path: Path) -> None:
    assert staleness.intake_entries(tmp_path) == ([], set())
    document = {**intake(True), "unavailable": [{"folder": 3}]}
    (tmp_path / "intake.json").write_bytes(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    assert staleness.intake_entries(tmp_path) == ([], set())
