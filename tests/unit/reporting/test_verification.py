"""Drift and installed variants in the report's data: readiness, history and action ranking."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.reporting import answers, status_report, verification

SHA_A, SHA_B = "a" * 64, "b" * 64


def drift(workflows: list[str], kind: str = "mismatch") -> dict[str, Any]:
    return {
        "folder": "vae",
        "installed_as": "ae.safetensors",
        "path": "/m/vae/ae.safetensors",
        "size": 10,
        "kind": kind,
        "expected_sha256": SHA_A,
        "expected_size": None,
        "actual_sha256": SHA_B,
        "hash_source": "declared",
        "url": "https://huggingface.co/x/y/resolve/main/ae.safetensors",
        "workflows": workflows,
    }


VARIANT = {"installed_as": "flux1-dev-fp8.safetensors", "size": 5, "differs": ["precision unmarked -> fp8"]}
VERIFY = {
    "cycle_id": "c1",
    "budget_bytes": 10,
    "progress": {"files_declared": 1},
    "drift": [drift(["a", "b", "c"])],
    "alternatives": [
        {
            "folder": "diffusion_models",
            "name": "flux1-dev.safetensors",
            "download_size": 23_000,
            "variants": [{**VARIANT, "loader_note": None}],
            "workflows": ["b"],
        }
    ],
}


def scanned(name: str, models: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "workflow": name,
        "path": f"/w/{name}",
        "source": "comfyui",
        "error": None,
        "models": models or [],
        "nodes": [],
    }


def test_drifted_workflows_need_review_keep_their_history_and_name_the_drift_actions() -> None:
    missing = {
        "name": "flux1-dev.safetensors",
        "folder": "diffusion_models",
        "status": "missing",
        "active": True,
        "origins": [],
        "invalid_reason": None,
        "note": "",
        "looked_in": [],
    }
    found = answers.from_results(
        [
            {
                "name": "flux1-dev.safetensors",
                "type": "diffusion_models",
                "status": "FOUND",
                "url": "https://x",
                "details": {},
            }
        ]
    )
    ids = verification.drift_ids(VERIFY)
    assert ids == {name: [f"replace_drift:/m/vae/ae.safetensors#{SHA_A[:16]}"] for name in ("a", "b", "c")}
    history = {"/w/a": {"last_resolved_at": "2026-11-01T00:00:00+00:00", "missing": []}}
    workflows, aggregate = status_report.build(
        [scanned("a"), scanned("b", [missing]), scanned("d")], found, history, False, "2026-11-30T12:00:00+00:00", ids
    )
    assert [w["readiness"] for w in workflows] == ["needs_review", "needs_review", "ready"]
    # Not resolved this cycle after all: the last time it was stays.
    assert workflows[0]["last_resolved_at"] == "2026-11-01T00:00:00+00:00"
    assert workflows[1]["last_resolved_at"] is None
    assert workflows[2]["last_resolved_at"] == "2026-11-30T12:00:00+00:00"
    assert workflows[0]["drift"] == ids["a"] and "drift" not in workflows[2]
    assert aggregate.summary()["needs_review"] == 2
    assert verification.block(VERIFY) == {
        "progress": {"files_declared": 1},
        "budget_bytes": 10,
        "drift": 1,
        "alternatives": 1,
        "cycle_id": "c1",
    }
    ranked = verification.merge_actions(aggregate.actions(), VERIFY)
    by_id = {a["id"]: a for a in ranked}
    assert by_id[ids["a"][0]]["workflows"] == ["a", "b", "c"]
    assert by_id["download:diffusion_models/flux1-dev.safetensors"]["variants_on_disk"][0]["size"] == 5
    # The variants named as each action is made (the report's way) are the ones added to the actions made.
    made = aggregate.actions(rank=False, variants=verification.variants(VERIFY))
    assert verification.merge_actions(made, VERIFY, with_variants=True) == ranked


def test_merge_actions_ranks_drift_with_the_others_and_attaches_variants_to_the_download() -> None:
    download = {
        "id": "download:diffusion_models/flux1-dev.safetensors",
        "kind": "download",
        "item": "flux1-dev.safetensors",
        "folder": "diffusion_models",
        "url": "https://huggingface.co/x",
        "size": 23_000,
        "detail": "",
        "workflows": ["b", "d"],
        "blocks": 2,
    }
    pack = {**download, "id": "install_pack:SomeNode", "kind": "install_pack", "item": "SomeNode", "folder": None}
    pack.update(workflows=["e"], blocks=1)
    ranked = verification.merge_actions([download, pack], VERIFY)
    assert [(a["kind"], a["blocks"]) for a in ranked] == [("replace_drift", 3), ("download", 2), ("install_pack", 1)]
    assert ranked[0]["url"] == "https://huggingface.co/x/y/resolve/main/ae.safetensors"
    assert SHA_A in ranked[0]["detail"] and SHA_B in ranked[0]["detail"]
    assert ranked[1]["variants_on_disk"][0]["installed_as"] == "flux1-dev-fp8.safetensors"
    assert "variants_on_disk" not in ranked[2]


def test_drift_detail_of_a_truncated_file_says_so() -> None:
    text = verification.drift_detail({**drift(["a"], "truncated"), "actual_sha256": None, "expected_size": 99})
    assert text.startswith("cut short: 10 bytes on disk of 99 bytes")


def test_drift_ids_of_one_workflow_are_its_entry_of_every_workflows() -> None:
    every = verification.drift_ids(VERIFY)
    names = {name for finding in VERIFY["drift"] for name in finding["workflows"]} | {"none.json"}
    assert all(verification.drift_ids_of(VERIFY, name) == every.get(name, []) for name in names)
    assert verification.drift_ids_of(None, "a.json") == []


def test_load_reads_verify_json_and_says_what_is_wrong_with_a_broken_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert verification.load(tmp_path) is None  # none written yet
    path = tmp_path / verification.ARTIFACT
    path.write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="comfywatchman"):
        assert verification.load(tmp_path) is None
    assert f"{path}: not valid JSON" in caplog.text and "no drift findings" in caplog.text
    caplog.clear()
    path.write_text(json.dumps({"drift": "not a list"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="comfywatchman"):
        assert verification.load(tmp_path) is None
    assert str(path) in caplog.text and "no drift findings" in caplog.text
