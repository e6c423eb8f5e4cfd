"""Drift and installed variants in the report's data: readiness, history and action ranking."""

from __future__ import annotations

from typing import Any

from comfywatchman.reporting import verification

SHA_A, SHA_B = "a" * 64, "b" * 64


def entry(name: str, readiness: str, missing: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "workflow": name,
        "path": f"/w/{name}",
        "readiness": readiness,
        "missing_models": missing or [],
        "missing_nodes": [],
        "last_resolved_at": "2026-11-30T12:00:00+00:00" if readiness in ("ready", "resolvable") else None,
        "error": None,
    }


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


def test_apply_makes_drifted_workflows_need_review_and_keeps_their_history() -> None:
    missing = [{"name": "flux1-dev.safetensors", "folder": "diffusion_models"}]
    workflows = [entry("a", "ready"), entry("b", "resolvable", missing), entry("c", "blocked")]
    summary = {"ready": 1, "resolvable": 1, "needs_review": 0, "blocked": 1, "error": 0}
    history = {"/w/a": {"last_resolved_at": "2026-11-01T00:00:00+00:00"}}
    block = verification.apply(workflows, summary, VERIFY, history)
    assert [w["readiness"] for w in workflows] == ["needs_review", "needs_review", "blocked"]
    assert summary == {"ready": 0, "resolvable": 0, "needs_review": 2, "blocked": 1, "error": 0}
    # Not resolved this cycle after all: the last time it was stays.
    assert workflows[0]["last_resolved_at"] == "2026-11-01T00:00:00+00:00"
    assert workflows[1]["last_resolved_at"] is None
    assert all(w["drift"][0]["installed_as"] == "ae.safetensors" for w in workflows)
    assert workflows[1]["missing_models"][0]["variants_on_disk"][0]["installed_as"] == "flux1-dev-fp8.safetensors"
    assert block == {
        "progress": {"files_declared": 1},
        "budget_bytes": 10,
        "drift": 1,
        "alternatives": 1,
        "cycle_id": "c1",
    }


def test_merge_actions_ranks_drift_with_the_others_and_attaches_variants_to_the_download() -> None:
    download = {
        "kind": "download",
        "item": "flux1-dev.safetensors",
        "folder": "diffusion_models",
        "url": "https://huggingface.co/x",
        "size": 23_000,
        "detail": "",
        "workflows": ["b", "d"],
        "blocks": 2,
    }
    pack = {**download, "kind": "install_pack", "item": "SomeNode", "folder": None, "workflows": ["e"], "blocks": 1}
    ranked = verification.merge_actions([download, pack], VERIFY)
    assert [(a["kind"], a["blocks"]) for a in ranked] == [("replace_drift", 3), ("download", 2), ("install_pack", 1)]
    assert ranked[0]["url"] == "https://huggingface.co/x/y/resolve/main/ae.safetensors"
    assert SHA_A in ranked[0]["detail"] and SHA_B in ranked[0]["detail"]
    assert ranked[1]["variants_on_disk"][0]["installed_as"] == "flux1-dev-fp8.safetensors"
    assert "variants_on_disk" not in ranked[2]


def test_drift_detail_of_a_truncated_file_says_so() -> None:
    text = verification.drift_detail({**drift(["a"], "truncated"), "actual_sha256": None, "expected_size": 99})
    assert text.startswith("cut short: 10 bytes on disk of 99 bytes")
