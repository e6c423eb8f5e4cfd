"""Every file a real cycle writes is in the catalogue and valid against its schema, and each kind refuses a
wrong date-time, a value outside an enum, a wrong type and a missing key. Stages run alone write exactly
what the catalogue says they write."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, catalogue
from comfywatchman.stages import ORDER
from tests.fakes.civitai_server import FakeCivitai
from tests.fakes.hf_server import FakeHub
from tests.helpers.comfy_tree import ComfyTree, run_cli, subprocess_env, ui_node, ui_workflow

pytestmark = pytest.mark.slow

Path_ = tuple[Any, ...]


def _config(folder: Path, civitai: FakeCivitai, hub: FakeHub) -> Path:
    """Write a config whose search asks the local fakes of Civitai and the Hub (so it writes its cache)."""
    path = folder / "config.toml"
    path.write_text(
        '[search]\nbackend_order = ["civitai", "huggingface"]\nmin_interval_seconds = 0.0\n'
        f'[civitai]\nbase_url = "{civitai.url}"\n[huggingface]\nendpoint = "{hub.url}"\n'
    )
    return path


def _install(tree: ComfyTree) -> None:
    tree.model("checkpoints", "base.safetensors")
    tree.pack("ComfyUI-Extra", ["ExtraNode"], version="1.2.0")
    tree.workflow(
        "ready.json",
        ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"]), ui_node(2, "ExtraNode", [])]),
    )
    tree.workflow(
        "missing.json",
        ui_workflow([ui_node(1, "LoraLoader", ["add_detail.safetensors", 1.0, 1.0]), ui_node(2, "NoSuchNode", [])]),
    )


@pytest.fixture(scope="module")
def cycle_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("cycle")
    tree = ComfyTree(base / "ComfyUI")
    _install(tree)
    home = base / "home"
    home.mkdir()
    with FakeCivitai() as civitai, FakeHub() as hub:
        config = _config(base, civitai, hub)
        for _ in range(2):  # the second cycle reads what the first wrote
            args = ("--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(tree.root))
            done = run_cli(*args, home=home)
            assert done.returncode == 0, done.stderr
    return home


def _files(home: Path) -> dict[str, Path]:
    return {
        p.relative_to(home).as_posix(): p
        for p in home.rglob("*")
        if p.is_file() and not p.name.endswith(".lock") and p.name != "cron.log"
    }


def _documents(home: Path) -> Iterator[tuple[catalogue.Artifact, str, Any]]:
    """Yield (artifact, file, document) for every JSON file and the last line of every JSON-lines file."""
    for relative, path in sorted(_files(home).items()):
        item = catalogue.for_relative_path(relative)
        assert item is not None
        if item.kind == "json":
            yield item, relative, json.loads(path.read_text(encoding="utf-8"))
        elif item.kind == "jsonl":
            yield item, relative, json.loads(path.read_text(encoding="utf-8").splitlines()[-1])


def test_every_file_of_a_cycle_is_in_the_catalogue_and_every_artifact_is_there(cycle_home: Path) -> None:
    written = _files(cycle_home)
    undeclared = [r for r in written if catalogue.for_relative_path(r) is None]
    assert undeclared == [], undeclared
    expected = {
        a.locate(cycle_home, stage).relative_to(cycle_home).as_posix()
        for a in catalogue.ARTIFACTS
        if a.every_cycle
        for stage in (ORDER if "{stage}" in a.path else ("",))
    }
    on_demand = {a.path for a in catalogue.ARTIFACTS if not a.every_cycle}
    assert expected == set(written) - on_demand


def test_every_artifact_of_a_cycle_validates(cycle_home: Path) -> None:
    kinds = set()
    for item, relative, _ in _documents(cycle_home):
        path = cycle_home / relative
        if item.kind == "json":
            artifacts.read(path, item.schema)  # type: ignore[arg-type]
        else:
            assert list(artifacts.read_jsonl(path, item.schema)), relative  # type: ignore[arg-type]
            lines = path.read_text(encoding="utf-8").splitlines()
            assert len(list(artifacts.read_jsonl(path, item.schema))) == len(lines)  # type: ignore[arg-type]
        kinds.add(item.key)
    assert kinds == {a.key for a in catalogue.ARTIFACTS if a.schema and a.every_cycle}


# --- the schema of each value, found by walking document and schema together -------------------------------


def _resolve(node: dict[str, Any], base: str) -> tuple[dict[str, Any], str]:
    while "$ref" in node:
        target, _, pointer = node["$ref"].partition("#")
        base = artifacts.SCHEMA_BASE + target if target else base
        node = artifacts._schemas()[base]
        for part in (p for p in pointer.split("/") if p):
            node = node[part]
    return node, base


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def _fits(node: dict[str, Any], value: Any) -> bool:
    types = node.get("type")
    if types is None:
        return True
    types = [types] if isinstance(types, str) else types
    kind = _json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def _walk(value: Any, node: dict[str, Any], base: str, at: Path_ = ()) -> Iterator[tuple[Path_, dict[str, Any]]]:
    node, base = _resolve(node, base)
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = [_resolve(b, base) for b in node[key]]
            fitting = [(b, bb) for b, bb in branches if _fits(b, value)]
            if len(fitting) == 1:
                node, base = fitting[0]
    yield at, node
    if isinstance(value, dict):
        for name, item in value.items():
            child = node.get("properties", {}).get(name)
            if child is None and isinstance(node.get("additionalProperties"), dict):
                child = node["additionalProperties"]
            if child is not None:
                yield from _walk(item, child, base, (*at, name))
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            yield from _walk(item, node["items"], base, (*at, index))


def _set(document: Any, at: Path_, value: Any) -> Any:
    out = copy.deepcopy(document)
    target = out
    for part in at[:-1]:
        target = target[part]
    if value is KeyError:
        del target[at[-1]]
    else:
        target[at[-1]] = value
    return out


def _mutations(document: Any, schema_name: str) -> dict[str, Any]:
    """Return one broken copy of ``document`` per kind of mistake its schema can catch in it."""
    uri = artifacts.schema_uri(schema_name)
    walked = list(_walk(document, artifacts._schemas()[uri], uri))
    broken: dict[str, Any] = {}
    for at, node in walked:
        if at and node.get("format") == "date-time" and "date-time" not in broken:
            broken["date-time"] = _set(document, at, "yesterday")
        if at and "enum" in node and "enum" not in broken:
            broken["enum"] = _set(document, at, "surely-not-in-the-enum")
    root = artifacts._schemas()[uri]
    typed = [k for k in root["required"] if "type" in root["properties"][k]]
    key = typed[0]
    types = root["properties"][key]["type"]
    broken["type"] = _set(document, (key,), {"wrong": "type"} if "object" not in types else ["wrong type"])
    broken["missing key"] = _set(document, (root["required"][0],), KeyError)
    return broken


# Kinds whose documents in this cycle hold no value the schema constrains by an enum or as a date-time.
NO_ENUM_HERE = {"awake", "model_cache", "report_history", "scan_inputs", "verify", "verify_inputs"}
NO_ENUM_HERE |= {"search_inputs", "report_inputs", "scan_lines", "pack_reads"}
NO_DATE_TIME_HERE = {"report_history", "scan_inputs", "verify_inputs", "scan_lines", "pack_reads"}


def test_every_artifact_kind_refuses_a_wrong_date_time_enum_type_or_missing_key(cycle_home: Path) -> None:
    covered: dict[str, set[str]] = {}
    for item, relative, document in _documents(cycle_home):
        assert item.schema is not None
        assert artifacts.schema_errors(document, item.schema, relative) == []
        for mistake, wrong in _mutations(document, item.schema).items():
            errors = artifacts.schema_errors(wrong, item.schema, relative)
            assert errors, (relative, mistake)
            assert all(e.startswith(f"{relative}: ") for e in errors)
            covered.setdefault(item.key, set()).add(mistake)
    everything = {"date-time", "enum", "type", "missing key"}
    expected = {
        key: everything
        - ({"enum"} if key in NO_ENUM_HERE else set())
        - ({"date-time"} if key in NO_DATE_TIME_HERE else set())
        for key in covered
    }
    assert covered == expected, sorted((k, sorted(v)) for k, v in covered.items() if v != expected[k])
    assert set(covered) == {a.key for a in catalogue.ARTIFACTS if a.schema and a.every_cycle}


def test_each_stage_alone_writes_what_the_catalogue_says(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    _install(comfy_tree)
    with FakeCivitai() as civitai, FakeHub() as hub:
        _each_stage_alone(comfy_tree, home, _config(tmp_path, civitai, hub))


def _each_stage_alone(comfy_tree: ComfyTree, home: Path, config: Path) -> None:
    for stage in ORDER:
        before = {r: p.stat().st_mtime_ns for r, p in _files(home).items()}
        flags = ["--force"] if stage == "gate" else []
        args = ("--stage", stage, "--config", str(config), "--comfyui-root", str(comfy_tree.root), *flags)
        done = run_cli(*args, home=home)
        assert done.returncode == 0, (stage, done.stderr)
        after = {r: p.stat().st_mtime_ns for r, p in _files(home).items()}
        # The config cache is the command line's, not the stage's: written by any command whose config changed.
        changed = {r for r in after if before.get(r) != after[r]} - {catalogue.artifact("config_cache").path}
        written = [a for a in catalogue.written_by(stage) if a.every_cycle]
        declared = {a.locate(home, stage).relative_to(home).as_posix() for a in written}
        # A file an earlier stage fills too (a parts pack the scan filled) is written again only when it lacks
        # something.
        filled = {
            a.locate(home, stage).relative_to(home).as_posix()
            for a in written
            if any(ORDER.index(w) < ORDER.index(stage) for w in a.writers if w in ORDER)
        }
        assert declared - filled <= changed <= declared, stage


# The command run with an audit hook that writes each file of the home it opened for reading, one per line.
_AUDITED = """
import os, sys
home, out = sys.argv.pop(1), sys.argv.pop(1)
opened = set()

def hook(event, args):
    if event != "open" or not isinstance(args[0], (str, bytes)):
        return
    mode, flags = args[1], args[2]
    reading = ("r" in mode and "+" not in mode) if isinstance(mode, str) else (flags & os.O_ACCMODE) == os.O_RDONLY
    path = os.path.abspath(os.fsdecode(args[0]))
    if reading and path.startswith(home + os.sep) and os.path.isfile(path):
        opened.add(os.path.relpath(path, home).replace(os.sep, "/"))

sys.addaudithook(hook)
from comfywatchman.__main__ import run
try:
    code = run()
finally:
    with open(out, "w", encoding="utf-8") as handle:
        handle.write("\\n".join(sorted(opened)))
sys.exit(code)
"""


def test_each_stage_alone_reads_only_what_the_catalogue_says_it_reads(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    # The catalogue's readers say which stages may run side by side (``stages.SIDE_BY_SIDE``): a read left out of
    # it would let a stage run beside the one that writes what it reads, and take last cycle's version.
    _install(comfy_tree)
    with FakeCivitai() as civitai, FakeHub() as hub:
        config = _config(tmp_path, civitai, hub)
        undeclared: list[tuple[str, str]] = []
        for stage in ORDER:
            out = tmp_path / f"{stage}.opened"
            flags = ["--force"] if stage == "gate" else []
            command = [sys.executable, "-c", _AUDITED, str(home.resolve()), str(out), "--stage", stage]
            command += ["--config", str(config), "--comfyui-root", str(comfy_tree.root), *flags]
            done = subprocess.run(
                command, cwd=home, env=subprocess_env(home), capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, (stage, done.stderr)
            for relative in filter(None, out.read_text(encoding="utf-8").splitlines()):
                artifact = catalogue.for_relative_path(relative)
                # Not the stage's own reads: a file that is no artifact, the command's config cache, and the
                # last gate's record, which gives a stage run alone the cycle it belongs to.
                if artifact is None or artifact.key in ("config_cache", "gate"):
                    continue
                if stage not in artifact.readers and stage not in artifact.writers:
                    undeclared.append((stage, relative))
    assert undeclared == [], undeclared
