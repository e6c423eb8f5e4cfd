"""Fuzzing the workflow reader and the scan stage (issues 10 and 13): malformed files made from the real
templates corpus, and arbitrary JSON values planted in real templates by hypothesis.

Each file must end as a parsed workflow, an ``error`` row naming it, or a non-workflow (an image without
one): never an exception, never a hang, never a scan.json that cannot be written, and the good files beside
it are scanned as if it were not there. ``make test`` runs a few hundred files; ``make test-reliability``
(marker ``reliability``) runs 10,000 and prints the figures.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.workflow import extract
from comfywatchman.workflow.load import WorkflowError, parse_bytes
from tests.helpers.comfy_tree import ComfyTree, run_cli
from tests.helpers.limits import deadline

pytest.importorskip("comfyui_workflow_templates_json")
hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

from tests.reliability import fuzz  # noqa: E402 - needs the corpus checked above

FAST_FILES = 300
LONG_FILES = 10_000
BATCH = 500  # files per real cycle in the long run
GOOD = 6  # untouched templates in every cycle, compared with a clean run
# Slow enough to notice a loop gone quadratic, loose enough for a shared CI machine.
MAX_SECONDS_PER_FILE = 5.0
MAX_RSS_RISE_MB = 600.0
KEPT_FIELDS = ("format", "container", "error", "models", "installed_models", "nodes", "provided_nodes")


def _read_all(tmp_path: Path, count: int) -> fuzz.Figures:
    figures = fuzz.Figures()
    folder = tmp_path / "files"
    folder.mkdir()
    for number in range(count):
        made = fuzz.make(number)
        path = folder / made.name
        path.write_bytes(made.content)
        fuzz.read_one(path, figures, f"{made.name} {made.mutations}")
        for mutation in made.mutations:
            figures.by_mutation[mutation] = figures.by_mutation.get(mutation, 0) + 1
        path.unlink()
    return figures


def _check(figures: fuzz.Figures, count: int) -> None:
    print(f"\n{figures.line()}")
    print(f"fuzz: mutations applied: {dict(sorted(figures.by_mutation.items()))}")
    assert figures.tried == count
    assert not figures.crashes, figures.crashes[:10]
    assert not figures.hangs, figures.hangs[:10]
    assert figures.max_seconds < MAX_SECONDS_PER_FILE, figures.slowest
    assert figures.max_rss_rise_mb < MAX_RSS_RISE_MB, figures.biggest
    # The corpus is varied enough to mean something: every outcome occurs.
    assert figures.parsed and figures.errors and figures.not_workflows


def test_fuzzed_files_are_read_or_refused_within_bounds(tmp_path: Path) -> None:
    _check(_read_all(tmp_path, FAST_FILES), FAST_FILES)


@pytest.mark.reliability
def test_fuzzed_files_are_read_or_refused_within_bounds_long(tmp_path: Path) -> None:
    _check(_read_all(tmp_path, LONG_FILES), LONG_FILES)


# -- hypothesis: any JSON value anywhere in a real template ---------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(max_size=10).map(lambda t: t + "\ud800.safetensors"),
    st.sampled_from(["a.safetensors", "embedding:x", "-1", "-10", "workflow>g", "ckpt_name"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _slots(data: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of the places a value can be planted (capped: templates run to thousands)."""
    found: list[tuple[Any, Any]] = []
    for container in fuzz._interesting(data) + fuzz._containers(data, 400):
        keys = list(container) if isinstance(container, dict) else range(len(container))
        found.extend((container, key) for key in keys)
    return found


@hypothesis.settings(max_examples=100, deadline=None, derandomize=True, database=None)
@hypothesis.given(template=st.integers(min_value=0), spot=st.integers(min_value=0), value=_values, data=st.data())
def test_any_json_value_planted_in_a_template_is_read_or_refused(
    template: int, spot: int, value: Any, data: Any
) -> None:
    templates = fuzz.templates()
    name, raw = templates[template % len(templates)]
    workflow_data = json.loads(raw)
    slots = _slots(workflow_data)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        container, key = slots[spot % len(slots)]
        container[key] = value
        spot = data.draw(st.integers(min_value=0))
    text = json.dumps(workflow_data).encode()
    loaders, placeholders = fuzz.scan_settings()
    with deadline(fuzz.HANG_S):
        try:
            workflow = parse_bytes(text, Path(name))
            found = extract.extract(workflow, loaders, placeholders).to_json()
        except (WorkflowError, extract.TooLarge):
            return
    json.dumps(found, ensure_ascii=False, allow_nan=False).encode("utf-8")


# -- real cycles: the CLI in a subprocess on a tree holding good and fuzzed files -----------------------


def _tree(tmp_path: Path, label: str) -> tuple[ComfyTree, Path, Path]:
    tree = ComfyTree(tmp_path / label / "ComfyUI")
    home = tmp_path / label / "home"
    home.mkdir()
    config = home / "config.toml"
    config.write_text(
        '[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n'
        'include = ["*.json", "*.png", "*.webp"]\n',
        encoding="utf-8",
    )
    for name, raw in fuzz.templates()[:: len(fuzz.templates()) // GOOD][:GOOD]:
        tree.raw_workflow(f"good-{name}", raw)
    return tree, home, config


def _cycle(tree: ComfyTree, home: Path, config: Path) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = run_cli(
        "--run-cycle",
        "--offline",
        "--force",
        "--quiet",
        "--comfyui-root",
        str(tree.root),
        "--config",
        str(config),
        home=home,
        timeout=1200,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-4000:]
    return artifacts.read(home / "state" / "scan.json", "scan"), elapsed  # read() validates against the schema


def _kept(entry: dict[str, Any], root: Path) -> str:
    """Return what a good file's entry says, with its install's folder left out (each cycle has its own)."""
    return json.dumps({k: entry[k] for k in KEPT_FIELDS}, sort_keys=True).replace(str(root), "<root>")


def _fuzzed_cycles(tmp_path: Path, count: int, batch: int) -> None:
    clean_tree, clean_home, clean_config = _tree(tmp_path, "clean")
    clean, _ = _cycle(clean_tree, clean_home, clean_config)
    expected = {w["workflow"]: _kept(w, clean_tree.root) for w in clean["workflows"]}
    assert len(expected) == GOOD and all(w["error"] is None for w in clean["workflows"])
    totals = {"files": 0, "errors": 0, "not_workflows": 0, "parsed": 0, "cycles": 0}
    slowest = 0.0
    for first in range(0, count, batch):
        tree, home, config = _tree(tmp_path, f"batch{first}")
        names = []
        for number in range(first, min(first + batch, count)):
            made = fuzz.make(number)
            tree.raw_workflow(made.name, made.content)
            names.append(made.name)
        scanned, elapsed = _cycle(tree, home, config)
        slowest = max(slowest, elapsed)
        entries = {w["workflow"]: w for w in scanned["workflows"]}
        images = {w["workflow"] for w in scanned["not_workflows"]}
        for name, want in expected.items():
            assert _kept(entries[name], tree.root) == want, f"{name} changed beside fuzzed files from {first}"
        for name in names:
            assert name in entries or name in images, name
            if name in entries and entries[name]["error"] is not None:
                assert entries[name]["error"].startswith(str(tree.workflows / name)), entries[name]["error"]
                totals["errors"] += 1
            elif name in entries:
                totals["parsed"] += 1
        totals["files"] += len(names)
        totals["not_workflows"] += len(images)
        totals["cycles"] += 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"\nfuzz cycles: {totals['cycles']} real cycles (exit 0 each) over {totals['files']} fuzzed files: "
        f"{totals['parsed']} read, {totals['errors']} error rows, {totals['not_workflows']} not workflows; "
        f"good files unchanged; slowest cycle {slowest:.1f} s; peak RSS of a cycle {peak:.0f} MB"
    )


@pytest.mark.slow
def test_real_cycles_scan_fuzzed_files_beside_good_ones(tmp_path: Path) -> None:
    _fuzzed_cycles(tmp_path, 100, 100)


@pytest.mark.reliability
def test_real_cycles_scan_fuzzed_files_beside_good_ones_long(tmp_path: Path) -> None:
    _fuzzed_cycles(tmp_path, LONG_FILES, BATCH)
