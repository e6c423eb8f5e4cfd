"""The store's payload bytes, made by the scan's worker processes without the store's file handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import comfywatchman
from comfywatchman.workflow import payload
from comfywatchman.workflow.store import RequirementStore

REQ = {"format": "ui", "container": "json", "models": [{"name": "a.safetensors", "folder": "loras"}], "nodes": []}


def test_payload_is_compact_json_and_what_the_store_encodes() -> None:
    assert payload.encode(REQ) == json.dumps(REQ, separators=(",", ":")).encode("ascii")
    assert RequirementStore.encode(REQ) == payload.encode(REQ)


def test_payloads_orjson_refuses_are_written_by_the_standard_library() -> None:
    odd = {**REQ, "nodes": [{"class_type": "X", "big": 2**70, "name": "\ud800"}]}
    assert json.loads(payload.encode(odd)) == odd


def test_a_worker_imports_neither_the_store_nor_subprocess() -> None:
    """What a worker process imports (each one starts that much sooner): not the store, temp files or
    process spawning, which only the scan's own process needs."""
    probe = (
        "import sys; import comfywatchman.workflow.parse_worker; "
        "print(sorted({'comfywatchman.workflow.store', 'tempfile', 'subprocess'} & set(sys.modules)))"
    )
    package_root = str(Path(comfywatchman.__file__).resolve().parents[1])
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env={"PYTHONPATH": package_root}
    )
    assert found.stdout.strip() == "[]"
