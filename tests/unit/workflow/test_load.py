"""Reading workflow bytes: the fast parser and the standard one agree on what users see."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import regular_files
from comfywatchman.workflow.load import NotAWorkflow, WorkflowError, from_data, load, loads, parse_bytes
from tests.unit.workflow.test_images import png, text


def test_loads_accepts_nan_as_pythons_json_writes_it() -> None:
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    assert loads('{"nodes": []}') == {"nodes": []}


def test_loads_words_errors_like_the_standard_parser() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting"):
        loads(b'{"nodes": [')


def test_parse_bytes_names_file_line_and_column_of_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"w\.json: invalid JSON \(Expecting value at line 2 column 1\)"):
        parse_bytes(b'{"nodes":\n', tmp_path / "w.json")


# Malformed files (issue 10): each is an error naming the file, or read with what UTF-8 can hold.


def test_a_lone_surrogate_is_read_as_a_replacement_character() -> None:
    raw = b'{"nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["\\ud800.safetensors"]}]}'
    workflow = parse_bytes(raw, Path("w.json"))
    name = workflow.data["nodes"][0]["widgets_values"][0]
    assert name == "\ufffd.safetensors"
    name.encode("utf-8")  # what scan.json is written in


def test_a_lone_surrogate_in_a_key_is_replaced_too() -> None:
    data = loads(b'{"\\udc80key": ["a", {"b": "\\ud83d"}]}')
    assert data == {"\ufffdkey": ["a", {"b": "\ufffd"}]}


@pytest.mark.parametrize("extra", [b"", b'"nan": NaN, '])  # NaN: orjson refuses it, the standard parser reads
@pytest.mark.parametrize("depth", [1100, 100_000])
def test_nesting_deeper_than_the_limit_is_an_error_not_a_recursion(depth: int, extra: bytes) -> None:
    raw = b"{" + extra + b'"nodes": [' + b"[" * depth + b"]" * depth + b"]}"
    with pytest.raises(WorkflowError, match=r"w\.json: invalid JSON \(nested deeper than 1024 levels\)"):
        parse_bytes(raw, Path("w.json"))


def test_deep_nesting_inside_a_png_chunk_is_an_error_naming_the_file() -> None:
    deep = "[" * 5000 + "]" * 5000
    with pytest.raises(WorkflowError, match=r"a\.png: PNG metadata holds no readable workflow .*nested deeper"):
        parse_bytes(png(text("workflow", deep)), Path("a.png"))


def test_a_number_python_refuses_is_an_error_naming_the_file() -> None:
    with pytest.raises(WorkflowError, match=r"w\.json: invalid JSON"):
        parse_bytes(b'{"nodes": [], "x": ' + b"1" * 5000 + b"}", Path("w.json"))


def test_an_image_without_a_workflow_is_not_a_workflow() -> None:
    with pytest.raises(NotAWorkflow, match="PNG image without an embedded workflow"):
        parse_bytes(png(), Path("photo.png"))


def test_a_file_over_the_size_limit_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    path.write_bytes(b'{"nodes": []}' + b" " * 2000)
    with pytest.raises(WorkflowError, match=r"huge\.json: larger than 0\.001 MB, the limit .*max_workflow_mb"):
        load(path, max_bytes=1000)
    assert load(path, max_bytes=10_000)[0].format == "ui"


def test_containers_nested_past_the_unwrap_limit_are_not_a_workflow() -> None:
    data: Any = {"nodes": []}
    for _ in range(5000):
        data = {"workflow": data}
    with pytest.raises(WorkflowError, match="not a ComfyUI workflow"):
        from_data(data, Path("w.json"))


@pytest.mark.parametrize("limit", [None, 10_000, 1_000])
def test_a_file_that_grew_after_its_size_was_taken_is_read_whole_or_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    """The size the reader asks for comes from fstat; a file written on meanwhile (fstat's size short of it)
    is read on to the limit, as one read of the limit would."""
    path = tmp_path / "w.json"
    content = json.dumps({"nodes": [{"type": "X", "widgets_values": ["a" * 3000]}]}).encode()
    path.write_bytes(content)
    real_fstat = os.fstat

    def short_fstat(fd: int) -> Any:
        found = real_fstat(fd)
        return type("Stat", (), {"st_size": found.st_size // 10, "st_mode": found.st_mode})()

    monkeypatch.setattr(regular_files.os, "fstat", short_fstat)
    if limit is not None and len(content) > limit:
        with pytest.raises(WorkflowError, match="larger than"):
            load(path, max_bytes=limit)
    else:
        workflow, raw = load(path, max_bytes=limit)
        assert raw == content and workflow.format == "ui"
