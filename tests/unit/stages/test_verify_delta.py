"""The verify of a cycle where a few workflows changed, made from the last one (``verify_delta``): what it writes
(verify.json, verify_inputs.json, hashes.json) is what a full verify writes (kept == fresh) when workflows
come, go or change, when a FOUND answer's line changes, and when a hash is declared for a file hashed before;
a changed FOUND answer, a file never hashed, a changed file or a torn memo mean the full verify. Real stages
on a small install in tmp_path, real files hashed."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from comfywatchman import hashing
from comfywatchman.stages import verify, verify_delta
from comfywatchman.stages.scan_parts import line_digest
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import DECLARED, T0, context, run

UP_TO_SEARCH = ("cache", "intake", "scan", "search")
KEPT = "made from the last verify"
FULL = "verified in full"
URL = "https://huggingface.co/org/repo/resolve/main/"


def declared(name: str, folder: str, sha: str) -> dict[str, Any]:
    """A ``properties.models`` declaration of ``name`` with the sha256 ``sha``."""
    return {"name": name, "url": URL + name, "directory": folder, "hash": sha, "hash_type": "SHA256"}


def node(node_id: int, kind: str, name: str, *, declare: dict[str, Any] | None = None) -> dict[str, Any]:
    widgets: list[Any] = [name, 1, 1] if kind == "LoraLoader" else [name]
    props = {"models": [declare]} if declare is not None else {}
    return ui_node(node_id, kind, widgets, properties=props)


def make_install(tree: ComfyTree) -> dict[str, str]:
    """Installed files with real content (one declared with its own hash, one with another, one never
    declared), a missing file with a variant on disk, a missing LoRA and a missing declared VAE (FOUND from
    its URL); return the sha256 of each installed file by name."""
    shas = {}
    for folder, name in (
        ("checkpoints", "base.safetensors"),
        ("vae", "good.safetensors"),
        ("loras", "drift.safetensors"),
        ("checkpoints", "other.safetensors"),
        ("diffusion_models", "flux_fp8_e4m3fn.safetensors"),
    ):
        path = tree.model(folder, name)
        path.write_bytes(path.read_bytes() + name.encode())
        shas[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    wrong = "0" * 64
    tree.workflow(
        "a.json",
        ui_workflow(
            [
                node(
                    1,
                    "CheckpointLoaderSimple",
                    "base.safetensors",
                    declare=declared("base.safetensors", "checkpoints", wrong),
                ),
                node(
                    2,
                    "VAELoader",
                    "good.safetensors",
                    declare=declared("good.safetensors", "vae", shas["good.safetensors"]),
                ),
                node(3, "LoraLoader", "missing_lora.safetensors"),
                node(4, "UNETLoader", "flux_fp16.safetensors"),
                node(5, "VAELoader", "declared.safetensors", declare={**DECLARED, "directory": "vae"}),
            ]
        ),
    )
    tree.workflow(
        "b.json",
        ui_workflow(
            [node(1, "CheckpointLoaderSimple", "base.safetensors"), node(2, "UNETLoader", "flux_fp16.safetensors")]
        ),
    )
    tree.workflow(
        "c.json",
        ui_workflow(
            [
                node(
                    1,
                    "VAELoader",
                    "good.safetensors",
                    declare=declared("good.safetensors", "vae", shas["good.safetensors"]),
                ),
                node(2, "LoraLoader", "drift.safetensors", declare=declared("drift.safetensors", "loras", wrong)),
            ]
        ),
    )
    return shas


def verified(home: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """verify.json and verify_inputs.json without what names the cycle (and the identities of the search's files,
    which are those of the home's own files, not what was verified), and hashes.json as it is."""
    state = home / "state"
    document = orjson.loads((state / verify.ARTIFACT).read_bytes())
    inputs = orjson.loads((state / verify.INPUTS).read_bytes())
    for data in (document, inputs):
        data.pop("cycle_id")
        data.pop("generated_at", None)
    inputs.get("search_files", {}).pop("identity", None)
    # How long hashing took is the machine's clock, not what was verified: a loaded machine gives 0.001 s.
    document.get("progress", {}).pop("hash_seconds", None)
    document["detail"] = re.sub(r" in [0-9.]+ s\)", " in - s)", document.get("detail", ""))
    return document, inputs, (state / hashing.FILE).read_bytes()


def cycle(
    tree: ComfyTree,
    home: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    number: int,
    why_full: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Run cycle ``number`` up to the search, then verify: assert it was made from the last verify, or in
    full for the reason ``why_full``, and that it writes what a full verify of the same state writes; return
    what it wrote."""
    kept = why_full is None
    ctx = context(tree, home, f"c{number}", T0 + timedelta(hours=number))
    run(ctx, UP_TO_SEARCH)
    scratch = tmp_path / f"scratch{number}"
    shutil.copytree(home, scratch)
    (scratch / "state" / verify_delta.FILE).unlink(missing_ok=True)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages"):
        run(ctx, ("verify",))
    assert (KEPT in caplog.text) is kept, caplog.text
    assert (FULL in caplog.text) is not kept, caplog.text
    assert why_full is None or why_full in caplog.text, caplog.text
    made = verified(home)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages"):
        run(context(tree, scratch, f"c{number}", T0 + timedelta(hours=number)), ("verify",))
    assert KEPT not in caplog.text
    assert verified(scratch) == made
    if kept:  # the memo a kept verify writes holds what the full verify's holds (line ids aside)
        assert memo_by_path(home) == memo_by_path(scratch)
    return made


def memo_by_path(home: Path) -> dict[str, Any]:
    """The memo in ``home``'s missing files and targets, each line id given as its workflow."""
    memo = verify_delta.Memo.load(home / "state" / verify_delta.FILE)
    assert memo is not None
    path_of = dict(zip(memo.ids, memo.paths, strict=True))
    missing = {(f, k): (e, [path_of[i] for i in ids]) for f, k, e, ids in memo.missing.rows()}
    assert len(missing) == len(memo.missing.lines) and memo.missing.lines == sorted(memo.missing.lines)
    targets = {p: sorted(path_of[i] for i in ids) for p, ids in memo.targets.items()}
    folders = {folder: files for folder, files in memo.folders.rows()}
    assert folders == {
        f: g["files"] for f, g in orjson.loads((home / "state" / "model_cache.json").read_bytes())["folders"].items()
    }
    return {"missing": missing, "targets": targets, "folders": memo.folders.block}


def first(tree: ComfyTree, home: Path) -> dict[str, str]:
    shas = make_install(tree)
    run(context(tree, home, "c0", T0), (*UP_TO_SEARCH, "verify"))
    assert (home / "state" / verify_delta.FILE).exists()
    document, inputs, _ = verified(home)
    assert inputs["files_pending"] == 0 and document["drift"] and document["alternatives"]
    return shas


def test_workflows_that_come_go_and_change_give_what_a_full_verify_gives(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shas = first(comfy_tree, home)
    # A new workflow first in scan.json's order: it misses the fp16 file too, and expects base's own hash.
    comfy_tree.workflow(
        "0.json",
        ui_workflow(
            [
                node(1, "UNETLoader", "flux_fp16.safetensors"),
                node(
                    2,
                    "CheckpointLoaderSimple",
                    "base.safetensors",
                    declare=declared("base.safetensors", "checkpoints", shas["base.safetensors"]),
                ),
            ]
        ),
    )
    document, _, _ = cycle(comfy_tree, home, tmp_path, caplog, 1)
    base = [d for d in document["drift"] if d["installed_as"] == "base.safetensors"]
    assert [d["workflows"] for d in base] == [["a.json"]]
    assert next(a for a in document["alternatives"] if a["name"] == "flux_fp16.safetensors")["workflows"] == [
        "0.json",
        "a.json",
        "b.json",
    ]
    # The workflow first met naming a file changes: another spelling of it and another declaration come first.
    comfy_tree.workflow(
        "0.json",
        ui_workflow(
            [
                node(1, "UNETLoader", "FLUX_fp16.safetensors"),
                node(
                    2,
                    "CheckpointLoaderSimple",
                    "base.safetensors",
                    declare=declared("base.safetensors", "checkpoints", "1" * 64),
                ),
            ]
        ),
    )
    document, _, _ = cycle(comfy_tree, home, tmp_path, caplog, 2)
    assert next(a for a in document["alternatives"] if a["workflows"][0] == "0.json")["name"] == "FLUX_fp16.safetensors"
    # A workflow changes what it misses and drops its declaration of a file that drifted.
    comfy_tree.workflow(
        "c.json",
        ui_workflow([node(1, "VAELoader", "good.safetensors"), node(2, "LoraLoader", "other_missing.safetensors")]),
    )
    document, _, _ = cycle(comfy_tree, home, tmp_path, caplog, 3)
    assert not [d for d in document["drift"] if d["installed_as"] == "drift.safetensors"]
    # Workflows go: the files only they named with them.
    (comfy_tree.workflows / "0.json").unlink()
    (comfy_tree.workflows / "b.json").unlink()
    document, _, _ = cycle(comfy_tree, home, tmp_path, caplog, 4)
    assert next(a for a in document["alternatives"] if a["name"] == "flux_fp16.safetensors")["workflows"] == ["a.json"]
    # Nothing changed: the stage keeps verify.json as it is (before any memo is read).
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="comfywatchman.stages"):
        run(context(comfy_tree, home, "c5", T0 + timedelta(hours=5)), (*UP_TO_SEARCH, "verify"))
    assert "nothing changed since cycle c4" in caplog.text


def test_a_hash_declared_for_a_file_hashed_before_and_a_changed_found_line(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shas = first(comfy_tree, home)
    # b.json now declares base's own hash (base is hashed already: a.json declares another one).
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                node(
                    1,
                    "CheckpointLoaderSimple",
                    "base.safetensors",
                    declare=declared("base.safetensors", "checkpoints", shas["base.safetensors"]),
                ),
                node(2, "UNETLoader", "flux_fp16.safetensors"),
            ]
        ),
    )
    cycle(comfy_tree, home, tmp_path, caplog, 1)
    # A new workflow misses the declared VAE too: its FOUND line in search.json changes (its workflows), the
    # answer does not.
    comfy_tree.workflow(
        "d.json", ui_workflow([node(1, "VAELoader", "declared.safetensors", declare={**DECLARED, "directory": "vae"})])
    )
    cycle(comfy_tree, home, tmp_path, caplog, 2)


def test_what_the_memo_cannot_answer_means_the_full_verify(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shas = first(comfy_tree, home)
    # A hash declared for a file never hashed: it must be hashed.
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                node(
                    1,
                    "CheckpointLoaderSimple",
                    "other.safetensors",
                    declare=declared("other.safetensors", "checkpoints", shas["other.safetensors"]),
                )
            ]
        ),
    )
    cycle(comfy_tree, home, tmp_path, caplog, 1, "other.safetensors waits to be hashed")
    # The FOUND answer of the declared VAE changes (another URL).
    moved = {**DECLARED, "url": "https://example.com/files/declared.safetensors", "directory": "vae"}
    comfy_tree.workflow("d.json", ui_workflow([node(1, "VAELoader", "declared.safetensors", declare=moved)]))
    comfy_tree.workflow(
        "a.json",
        ui_workflow([node(1, "VAELoader", "declared.safetensors", declare=moved)]),
    )
    cycle(comfy_tree, home, tmp_path, caplog, 2, "the FOUND answers changed")
    # A file verified last time changes on disk (same workflows): hashed again.
    comfy_tree.workflow("e.json", ui_workflow([node(1, "LoraLoader", "missing_lora.safetensors")]))
    good = comfy_tree.root / "models" / "vae" / "good.safetensors"
    good.write_bytes(good.read_bytes() + b"changed")
    cycle(comfy_tree, home, tmp_path, caplog, 3, "the model cache, the settings or the last outputs changed")
    # A torn memo: ignored with a warning.
    comfy_tree.workflow("e.json", ui_workflow([node(1, "LoraLoader", "missing_lora2.safetensors")]))
    memo = home / "state" / verify_delta.FILE
    memo.write_bytes(memo.read_bytes()[:-100])
    cycle(comfy_tree, home, tmp_path, caplog, 4, "not a verify memo")
    # A memo of another format (the one before the missing files had a line each): the full verify.
    comfy_tree.workflow("e.json", ui_workflow([node(1, "LoraLoader", "missing_lora.safetensors")]))
    data = memo.read_bytes()
    memo.write_bytes(b"verify-delta-1" + data[data.index(b"\n") :])
    cycle(comfy_tree, home, tmp_path, caplog, 5, FULL)
    # A memo whose count of missing files is not one (with a right digest): ignored with a warning.
    comfy_tree.workflow("e.json", ui_workflow([node(1, "LoraLoader", "missing_lora2.safetensors")]))
    tag, head, body = memo.read_bytes().split(b"\n", 2)
    memo.write_bytes(b"\n".join([tag, head.replace(b'"missing":', b'"missing":1000000,"x":'), body]))
    cycle(comfy_tree, home, tmp_path, caplog, 6, "not a verify memo")
    # And the memo written by that full verify serves the next cycle.
    comfy_tree.workflow("e.json", ui_workflow([node(1, "LoraLoader", "missing_lora.safetensors")]))
    cycle(comfy_tree, home, tmp_path, caplog, 7)


@pytest.mark.parametrize(
    "line",
    [
        b'{"workflow":"a.json","reused":true,"sha256":"x"},\n',
        b'{"workflow":"a.json","reused":false,"sha256":"x"}\n',
        b'{"workflow":"a.json","sha256":"x"},\n',
        b'{"workflow":"a,\\"reused\\":true"}',
    ],
)
def test_a_line_is_known_by_the_digest_the_parts_give_it(line: bytes) -> None:
    body = line.rstrip(b"\n").removesuffix(b",")
    assert verify_delta.line_digest(line) == line_digest(body).decode("ascii")
    # The flag says only whether the scan parsed the file this time: a line is known by the rest of it.
    assert line_digest(body.replace(b'"reused":true', b'"reused":false')) == line_digest(body)


@pytest.mark.parametrize("content", [b"{torn", b"[]", b'{"folders":[]}', None])
def test_a_model_cache_that_cannot_be_read_as_one_means_the_full_verify(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "model_cache.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(verify_delta.Full, match=r"model_cache\.json"):
        verify_delta.ModelCache(path).get()
    path.write_bytes(b'{"folders":{"loras":{"paths":[],"files":[]}}}')
    assert verify_delta.ModelCache(path).get()["folders"]["loras"]["files"] == []


def test_missing_lines_find_each_file_by_its_folder_and_key_alone() -> None:
    # Keys that start alike, that JSON escapes, and a file without a folder.
    rows = [
        ["loras", "a.safetensors", "e1", [0]],
        ["loras", "a.safetensors.bak", "e2", [1, 2]],
        ["loras", 'we"ird\\name', "e3", [3]],
        [None, "a.safetensors", "e4", [4]],
        ["loras2", "a.safetensors", "e5", [5]],
        ["loras", "é.safetensors", "e6", [6]],
    ]
    lines = verify_delta.MissingLines.of(rows)
    assert sorted(map(tuple, lines.rows()), key=repr) == sorted(map(tuple, rows), key=repr)
    for folder, key, entry_key, ids in rows:
        assert lines.get((folder, key)) == [entry_key, ids]
    assert lines.get(("loras", "a")) is None and lines.get(("lora", "a.safetensors")) is None
    lines.pop(("loras", "a.safetensors"))
    lines.pop(("loras", "nothing"))
    assert lines.get(("loras", "a.safetensors")) is None
    assert lines.get(("loras", "a.safetensors.bak")) == ["e2", [1, 2]]
    lines.put(("loras", "a.safetensors"), "e7", [9])
    assert lines.get(("loras", "a.safetensors")) == ["e7", [9]]
    # Made again from the rows now, the lines are the same bytes in the same order.
    assert lines.lines == verify_delta.MissingLines.of(lines.rows()).lines


_KEYS = st.text(alphabet="abcz09", min_size=0, max_size=3)


@given(st.lists(_KEYS), st.sets(_KEYS), st.lists(_KEYS), st.booleans())
def test_the_variants_keys_are_updated_as_a_sort_of_the_sets_gives_them(
    last: list[str], dropped: set[str], added: list[str], as_written: bool
) -> None:
    if as_written:  # as the last verify wrote it: sorted, each key once
        last = sorted(set(last))
    assert verify_delta._updated(last, dropped, added) == sorted((set(last) - dropped) | set(added))
