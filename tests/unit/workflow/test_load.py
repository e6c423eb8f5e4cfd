"""Reading workflow bytes: the fast parser and the standard one agree on what users see."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from comfywatchman.workflow.load import WorkflowError, loads, parse_bytes


def test_loads_accepts_nan_as_pythons_json_writes_it() -> None:
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    assert loads('{"nodes": []}') == {"nodes": []}


def test_loads_words_errors_like_the_standard_parser() -> None:
    with pytest.raises(json.JSONDecodeError, match="Expecting"):
        loads(b'{"nodes": [')


def test_parse_bytes_names_file_line_and_column_of_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(WorkflowError, match=r"w\.json: invalid JSON \(Expecting value at line 2 column 1\)"):
        parse_bytes(b'{"nodes":\n', tmp_path / "w.json")
