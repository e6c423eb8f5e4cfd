"""The scan looks up the variants of the files workflows miss as it makes their entries, and verify takes them:
real stages on a small install in tmp_path, compared with verify looking for every variant itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from comfywatchman import catalogue
from comfywatchman.comfy import variants
from comfywatchman.stages import scan, variant_primer
from comfywatchman.stages.verify_inputs import INPUTS
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.stages.test_reuse import T0, context, run

BEFORE_VERIFY = ("cache", "intake", "scan", "search")


def make_install(tree: ComfyTree) -> None:
    """Installed files with variants of what workflows miss (precision, version, a .gguf), a file with none,
    one missing file spelt two ways and named by two loaders, one only by a muted node, one of no known folder."""
    tree.model("diffusion_models", "flux1-dev_fp8_e4m3fn.safetensors", 11)
    tree.model("diffusion_models", "flux1-dev-Q8_0.gguf", 12)
    tree.model("loras", "detail_v2.safetensors", 13)
    tree.model("checkpoints", "base.safetensors")
    tree.workflow("a.json", ui_workflow([ui_node(1, "UNETLoader", ["flux1-dev_fp16.safetensors", "default"])]))
    tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "UnetLoaderGGUF", ["FLUX1-DEV_fp16.safetensors"]),
                ui_node(2, "LoraLoader", ["detail_v1.safetensors", 1, 1]),
                ui_node(3, "LoraLoader", ["detail_v3.safetensors", 1, 1], mode=2),
            ]
        ),
    )
    tree.workflow("c.json", ui_workflow([ui_node(1, "LoraLoader", ["nothing_like_it.safetensors", 1, 1])]))
    tree.workflow("d.json", ui_workflow([ui_node(1, "SomePackNode", ["elsewhere.safetensors"])]))
    tree.workflow("e.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["base.safetensors"])]))


def kept_file(state: Path) -> Path:
    return catalogue.in_state(state, "verify_variants")


def verify_document(home: Path) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads((home / "state" / "verify.json").read_bytes())
    for key in ("generated_at", "fingerprint", "cycle_id"):
        document.pop(key, None)
    return document


@pytest.fixture
def counted_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names ``VariantIndex.variants`` is asked about, in order (the scan's lookups and verify's alike)."""
    asked: list[str] = []
    original = variants.VariantIndex.variants

    def counting(self: variants.VariantIndex, name: str, *args: Any) -> list[dict[str, Any]]:
        asked.append(name)
        return original(self, name, *args)

    monkeypatch.setattr(variants.VariantIndex, "variants", counting)
    return asked


def test_verify_takes_the_variants_the_scan_looked_up(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted_lookups: list[str]
) -> None:
    """A scan that makes many entries looks up each missing file once, as verify would (the first spelling and
    loader, active files only); verify then looks up none and writes what it writes when it looks for all."""
    make_install(comfy_tree)
    monkeypatch.setattr(scan, "MIN_PARALLEL", 1)  # five entries count as many here
    primed, looked = tmp_path / "primed", tmp_path / "looked"
    for home in (primed, looked):
        home.mkdir()
        if home == looked:
            monkeypatch.setattr(variant_primer, "wanted", lambda state: False)
        ctx = context(comfy_tree, home, "c1", T0)
        run(ctx, BEFORE_VERIFY)
        asked_by_scan = list(counted_lookups)
        counted_lookups.clear()
        run(ctx, ("verify",))
        if home == primed:
            assert kept_file(home / "state").exists()
            # The muted node's file is not verify's to look up.
            assert asked_by_scan == [
                "flux1-dev_fp16.safetensors",
                "detail_v1.safetensors",
                "nothing_like_it.safetensors",
                "elsewhere.safetensors",
            ]
            assert counted_lookups == []
        else:
            assert not kept_file(home / "state").exists()
            assert asked_by_scan == [] and len(counted_lookups) == 4
    document = verify_document(primed)
    assert document == verify_document(looked)
    found = {(a["folder"], a["name"]): [v["installed_as"] for v in a["variants"]] for a in document["alternatives"]}
    assert found == {
        ("diffusion_models", "flux1-dev_fp16.safetensors"): ["flux1-dev_fp8_e4m3fn.safetensors", "flux1-dev-Q8_0.gguf"],
        ("loras", "detail_v1.safetensors"): ["detail_v2.safetensors"],
    }


def test_a_scan_of_few_entries_or_under_a_known_model_cache_looks_up_nothing(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counted_lookups: list[str]
) -> None:
    """Few entries made (the usual cycle: one workflow changed) are not worth indexing the installed names for;
    and when verify kept the variants under this model cache, it has them already."""
    make_install(comfy_tree)
    ctx = context(comfy_tree, tmp_path, "c1", T0)
    run(ctx, BEFORE_VERIFY)  # five entries: fewer than MIN_PARALLEL
    assert counted_lookups == [] and not kept_file(tmp_path / "state").exists()
    run(ctx, ("verify",))
    assert not variant_primer.wanted(tmp_path / "state")  # verify's memo is of this model cache
    monkeypatch.setattr(scan, "MIN_PARALLEL", 1)
    comfy_tree.workflow("f.json", ui_workflow([ui_node(1, "LoraLoader", ["detail_v9.safetensors", 1, 1])]))
    counted_lookups.clear()
    run(context(comfy_tree, tmp_path, "c2", T0), ("cache", "intake", "scan"))
    assert counted_lookups == [] and not kept_file(tmp_path / "state").exists()


@pytest.mark.parametrize(
    "inputs",
    [None, b"{ torn", b"[]", b'{"variants": null}', b'{"variants": {"basis": "another model cache"}}'],
)
def test_verify_is_wanted_without_a_memo_of_this_model_cache(tmp_path: Path, inputs: bytes | None) -> None:
    (tmp_path / "model_cache.json").write_text("{}", encoding="utf-8")
    if inputs is not None:
        (tmp_path / INPUTS).write_bytes(inputs)
    assert variant_primer.wanted(tmp_path)
    (tmp_path / INPUTS).write_bytes(orjson.dumps({"variants": {"basis": variant_primer.basis(tmp_path)}}))
    assert not variant_primer.wanted(tmp_path)


def primer_with(tmp_path: Path, count_inactive: bool = False) -> variant_primer.VariantPrimer:
    (tmp_path / "model_cache.json").write_text("{}", encoding="utf-8")
    files = [{"name": "x_fp8.safetensors", "dir": 0, "size": 5}]
    cache = {"folders": {"loras": {"paths": ["/m/loras"], "files": files}}}
    return variant_primer.VariantPrimer(tmp_path, cache, count_inactive)


def test_what_is_kept_is_read_back_only_for_its_model_cache(tmp_path: Path) -> None:
    primer = primer_with(tmp_path)
    primer.add([["loras", "x_fp16.safetensors", True, "LoraLoader", "x_fp16.safetensors"]])
    primer.add([["loras", "X_FP16.safetensors", True, "LoraLoader", "x_fp16.safetensors"]])  # met before
    primer.add([["loras", "y.safetensors", False, "LoraLoader", "y.safetensors"]])  # inactive
    primer.save()
    kept = variant_primer.read(tmp_path, variant_primer.basis(tmp_path))
    assert list(kept) == [("loras", "x_fp16.safetensors", "LoraLoader")]
    assert [v["installed_as"] for v in kept[("loras", "x_fp16.safetensors", "LoraLoader")]] == ["x_fp8.safetensors"]
    assert variant_primer.read(tmp_path, "another model cache") == {}


def test_inactive_files_are_looked_up_when_inactive_nodes_count(tmp_path: Path) -> None:
    primer = primer_with(tmp_path, count_inactive=True)
    primer.add([["loras", "x_fp16.safetensors", False, None, "x_fp16.safetensors"]])
    assert list(primer.found) == [("loras", "x_fp16.safetensors", None)]


@pytest.mark.parametrize("damage", ["torn", "edited", "foreign", "absent"])
def test_a_damaged_or_foreign_file_is_not_read(tmp_path: Path, damage: str) -> None:
    primer = primer_with(tmp_path)
    primer.add([["loras", "x_fp16.safetensors", True, None, "x_fp16.safetensors"]])
    primer.save()
    path = kept_file(tmp_path)
    data = path.read_bytes()
    if damage == "torn":
        path.write_bytes(data[:-7])
    elif damage == "edited":
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    elif damage == "foreign":
        path.write_bytes(b"verify-variants-0" + data[data.index(b"\n") :])
    else:
        path.unlink()
    assert variant_primer.read(tmp_path, variant_primer.basis(tmp_path)) == {}


def test_a_lookup_that_fails_stops_the_looking_and_the_scan_goes_on(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever goes wrong looking up a variant, the scan and verify succeed, and verify looks for them itself."""
    make_install(comfy_tree)
    monkeypatch.setattr(scan, "MIN_PARALLEL", 1)

    def broken(*args: Any) -> list[dict[str, Any]]:
        raise RuntimeError("a bug")

    with monkeypatch.context() as patch:
        patch.setattr(variants.VariantIndex, "variants", broken)
        ctx = context(comfy_tree, tmp_path, "c1", T0)
        run(ctx, BEFORE_VERIFY)
    assert not kept_file(tmp_path / "state").exists()
    run(ctx, ("verify",))
    names = {a["name"] for a in verify_document(tmp_path)["alternatives"]}
    assert names == {"flux1-dev_fp16.safetensors", "detail_v1.safetensors"}
