"""The fast schema check agrees with jsonschema on every artifact a real cycle writes, and on thousands of
mechanical mutations of them: a document the fast check passes is never one jsonschema would refuse."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from tests.helpers.comfy_tree import run_cli

pytestmark = pytest.mark.slow

ARTIFACTS = {
    "state/gate.json": "gate",
    "state/model_cache.json": "model_cache",
    "state/custom_nodes_cache.json": "custom_nodes_cache",
    "state/intake.json": "intake",
    "state/scan.json": "scan",
    "state/search.json": "search",
    "state/download_queue.json": "download_queue",
    "state/scheduler.json": "scheduler",
    "state/report_history.json": "report_history",
    "output/reports/status/master_status.json": "master_status",
}
# Replacement values of every JSON type, so each mutation flips a type, an enum or a required key.
REPLACEMENTS: list[Any] = [None, True, 7, -1, 1.5, "", "x", [], {}, [1], {"unexpected": 1}]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:2]):  # two items show how a list's items are checked
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _mutated(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(doc)
    target = out
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        if isinstance(target, dict):
            del target[path[-1]]
        else:
            target.pop(path[-1])
    else:
        target[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("home")
    result = run_cli("--run-cycle", "--offline", home=path)
    assert result.returncode == 0, result.stderr
    return path


@pytest.mark.parametrize(("relative", "schema"), sorted(ARTIFACTS.items()))
def test_fast_check_agrees_with_jsonschema_on_artifact_and_its_mutations(
    home: Path, relative: str, schema: str
) -> None:
    document = json.loads((home / relative).read_text())
    check = artifacts.quick_check(schema)
    validator = artifacts.validator(schema)
    assert validator.is_valid(document)
    if check is None:
        pytest.skip(f"{schema} uses keywords the fast check does not compile; jsonschema alone decides")
    assert check(document)
    disagreements = []
    tried = 0
    for path in _paths(document):
        for value in [*REPLACEMENTS, KeyError]:
            mutant = _mutated(document, path, value)
            tried += 1
            if check(mutant) and not validator.is_valid(mutant):
                disagreements.append((path, value))
    assert tried > 0
    assert disagreements == [], disagreements[:5]
