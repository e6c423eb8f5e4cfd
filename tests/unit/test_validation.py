"""Validation: jsonschema-rs (the fast yes/no, formats included) and jsonschema (the wording) agree on
valid and broken documents, and a refused document gets a message naming the place."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from comfywatchman import artifacts

ORIGIN = {
    "node_id": "3:5",
    "node_type": "VAELoader",
    "input": "vae_name",
    "subgraph_path": ["S"],
    "mode": "active",
    "via": "promoted",
}
MODEL = {
    "name": "v.safetensors",
    "folder": "vae",
    "origins": [ORIGIN],
    "declarations": [],
    "active": True,
    "invalid_reason": None,
    "status": "missing",
    "installed_as": None,
    "note": "",
    "looked_in": ["/m/vae"],
    "checked_by": "files",
}
SCAN: dict[str, Any] = {
    "cycle_id": "c",
    "generated_at": "2025-10-23T12:00:00+00:00",
    "comfyui_root": "/c",
    "demo": False,
    "settings_hash": "h",
    "node_map": None,
    "server": None,
    "workflows": [
        {
            "workflow": "a.json",
            "path": "/c/a.json",
            "source": "comfyui",
            "sha256": "0" * 64,
            "format": "ui",
            "container": "json",
            "error": None,
            "reused": False,
            "models": [MODEL],
            "nodes": [
                {
                    "class_type": "VAELoader",
                    "node_ids": ["3:5"],
                    "modes": ["active"],
                    "active": True,
                    "state": "missing",
                    "packs": [],
                    "checked_by": "files",
                }
            ],
            "installed_models": [
                {"name": "a.safetensors", "folder": "checkpoints", "installed_as": "a.safetensors", "active": True}
            ],
            "provided_nodes": {"KSampler": "core", "Note": "frontend"},
        }
    ],
}


def _broken(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SCAN)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["workflows", 0, "models", 0, "status"], "gone"),
        (["workflows", 0, "models", 0, "origins", 0, "mode"], 4),
        (["workflows", 0, "models", 0, "folder"], 3),
        (["workflows", 0, "models", 0, "name"], KeyError),
        (["workflows", 0, "models", 0, "surprise"], 1),
        (["workflows", 0, "nodes", 0, "active"], "yes"),
        (["workflows", 0, "reused"], 0),
        (["workflows", 0, "models", 0, "status"], "installed"),
        (["workflows", 0, "nodes", 0, "state"], "core"),
        (["workflows", 0, "installed_models", 0, "installed_as"], None),
        (["workflows", 0, "installed_models", 0, "checked_by"], "files"),
        (["workflows", 0, "provided_nodes", "KSampler"], "missing"),
        (["workflows", 0, "provided_nodes"], KeyError),
        (["demo"], None),
    ],
)
def test_fast_validator_rejects_what_jsonschema_rejects(path: list[Any], value: Any) -> None:
    doc = _broken(path, value)
    assert not artifacts.fast_validator("scan").is_valid(doc)
    assert not artifacts.validator("scan").is_valid(doc)
    assert artifacts.schema_errors(doc, "scan", "scan.json")


def test_fast_validator_accepts_a_valid_document() -> None:
    assert artifacts.fast_validator("scan").is_valid(SCAN)
    assert artifacts.validator("scan").is_valid(SCAN)


def test_a_workflow_entry_is_checked_against_its_definition_alone() -> None:
    entry = SCAN["workflows"][0]
    assert artifacts.schema_errors(entry, "scan", "e", definition="workflow") == []
    broken = {**entry, "reused": "no"}
    assert artifacts.fast_validator("scan", "workflow").is_valid(broken) is False
    assert artifacts.schema_errors(broken, "scan", "e", definition="workflow") == [
        "e: at 'reused': 'no' is not of type 'boolean'"
    ]


def test_a_date_time_that_is_not_one_is_refused_with_its_place() -> None:
    # jsonschema's own format checker skips date-time without an optional package: the fast validator
    # checks it, and its message is the one given.
    doc = {**SCAN, "generated_at": "yesterday"}
    assert artifacts.schema_errors(doc, "scan", "scan.json") == [
        'scan.json: at \'generated_at\': "yesterday" is not a "date-time"'
    ]


def test_jsonschema_words_the_errors_and_the_fast_validator_adds_the_formats() -> None:
    doc = {**SCAN, "generated_at": "yesterday", "demo": "no"}
    assert artifacts.schema_errors(doc, "scan", "scan.json") == [
        "scan.json: at 'demo': 'no' is not of type 'boolean'",
        'scan.json: at \'generated_at\': "yesterday" is not a "date-time"',
    ]
