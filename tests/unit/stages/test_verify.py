"""The verify stage on a real template with declared sha256 hashes (``wan2.1_flf2v_720_f16.json`` of the
official templates) and real files on disk: the right file, a wrong one, a truncated one, a re-upload, and
variants of a missing file; the whole cycle through to master_status.json and .md."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, config, hashing
from comfywatchman.comfy.variants import VariantIndex
from comfywatchman.search.base import Evidence, SearchResult, Status
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages import verify
from comfywatchman.stages.context import StageContext, StageOutcome
from tests.helpers.comfy_tree import ComfyTree
from tests.unit.test_hashing import safetensors

templates_json = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATE = Path(templates_json.__file__).parent / "templates" / "wan2.1_flf2v_720_f16.json"
NAME = TEMPLATE.name
VAE = "wan_2.1_vae.safetensors"
CLIP_VISION = "clip_vision_h.safetensors"
TEXT_ENCODER = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
UNET = "wan2.1_flf2v_720p_14B_fp16.safetensors"
FP8 = "wan2.1_flf2v_720p_14B_fp8_e4m3fn.safetensors"
GGUF = "gguf/wan2.1-flf2v-720p-14B-Q4_K_S.gguf"


def declarations(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The template's own declarations by file name (each node's ``properties.models``)."""
    return {m["name"]: m for node in data["nodes"] for m in (node.get("properties") or {}).get("models") or []}


def original() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(TEMPLATE.read_bytes())
    return data


def make_install(tree: ComfyTree, home: Path, budget: int = 20_000_000_000) -> StageContext:
    """Install next to the real template: the VAE it declares (its declared hash set to the file's real
    sha256), a clip vision file of other content, a truncated text encoder, and two variants of its missing
    fp16 diffusion model."""
    data = original()
    vae = safetensors(tree.root / "models" / "vae" / VAE, os.urandom(3000)) if _mkdirs(tree, "vae") else None
    assert vae is not None
    declarations(data)[VAE]["hash"] = hashlib.sha256(vae.read_bytes()).hexdigest()
    _mkdirs(tree, "clip_vision")
    safetensors(tree.root / "models" / "clip_vision" / CLIP_VISION, os.urandom(5000))
    _mkdirs(tree, "text_encoders")
    safetensors(tree.root / "models" / "text_encoders" / TEXT_ENCODER, os.urandom(100), header_length=10_000)
    _mkdirs(tree, "diffusion_models/gguf")
    safetensors(tree.root / "models" / "diffusion_models" / FP8, os.urandom(700))
    (tree.root / "models" / "diffusion_models" / GGUF).write_bytes(b"GGUF" + os.urandom(400))
    tree.workflow(NAME, data)
    toml = home / "config.toml"
    toml.write_text(f"[verify]\nhash_budget_bytes = {budget}\n", encoding="utf-8")
    cfg = config.load(config_file=toml, flags={"comfyui_root": tree.root, "home": home, "offline": True}, env={})
    return StageContext(cfg, "test-cycle")


def _mkdirs(tree: ComfyTree, folder: str) -> bool:
    (tree.root / "models" / folder).mkdir(parents=True, exist_ok=True)
    return True


def cycle(ctx: StageContext) -> dict[str, Any]:
    """Run every stage after the gate; return verify.json."""
    for stage in ("cache", "intake", "scan", "search", "verify", "report"):
        outcome = STAGE_RUNNERS[stage](ctx)
        assert outcome.ok, (stage, outcome.errors)
    document: dict[str, Any] = artifacts.read(ctx.state_dir / "verify.json", "verify")
    return document


def report(ctx: StageContext) -> dict[str, Any]:
    document: dict[str, Any] = artifacts.read(ctx.config.reports_dir / "master_status.json", "master_status")
    return document


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wrong_and_truncated_files_drift_and_the_right_one_does_not(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home)
    found = cycle(ctx)
    declared = declarations(original())
    drift = {d["installed_as"]: d for d in found["drift"]}
    assert sorted(drift) == [CLIP_VISION, TEXT_ENCODER]  # the VAE is the declared file
    wrong = drift[CLIP_VISION]
    assert wrong["kind"] == "mismatch"
    assert wrong["expected_sha256"] == declared[CLIP_VISION]["hash"]
    assert wrong["actual_sha256"] == sha(comfy_tree.root / "models" / "clip_vision" / CLIP_VISION)
    assert wrong["url"] == declared[CLIP_VISION]["url"] and wrong["hash_source"] == "declared"
    assert wrong["workflows"] == [NAME]
    assert drift[TEXT_ENCODER]["kind"] == "truncated"
    assert found["progress"]["files_declared"] == 3
    assert found["progress"]["files_verified"] == 3 and found["progress"]["files_pending"] == 0


def test_report_ranks_drift_and_lists_variants_next_to_the_download(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home)
    cycle(ctx)
    status = report(ctx)
    (workflow,) = status["workflows"]
    actions = {a["id"]: a for a in status["actions"]}
    assert workflow["readiness"] == "needs_review"  # the download alone would make it resolvable
    # The entry names its drifted files' actions; each action carries the finding.
    assert {actions[d]["drift"]["installed_as"] for d in workflow["drift"]} == {CLIP_VISION, TEXT_ENCODER}
    assert status["summary"]["needs_review"] == 1 and status["summary"]["resolvable"] == 0
    (missing,) = workflow["missing_models"]
    assert missing["name"] == UNET and missing["status"] == "FOUND"
    variants = actions[missing["action"]]["variants_on_disk"]
    assert [v["installed_as"] for v in variants] == [FP8, GGUF]
    assert variants[1]["loader_note"] == "a .gguf file needs UnetLoaderGGUF (ComfyUI-GGUF) instead of UNETLoader"
    kinds = {(a["kind"], a["item"]) for a in status["actions"]}
    assert {("download", UNET), ("replace_drift", CLIP_VISION), ("replace_drift", TEXT_ENCODER)} <= kinds
    download = next(a for a in status["actions"] if a["kind"] == "download")
    assert download["variants_on_disk"][0]["installed_as"] == FP8
    replace = next(a for a in status["actions"] if a["item"] == CLIP_VISION)
    assert replace["url"] == declarations(original())[CLIP_VISION]["url"] and replace["blocks"] == 1
    assert status["verification"]["drift"] == 2 and status["verification"]["alternatives"] == 1
    page = (ctx.config.reports_dir / "master_status.md").read_text(encoding="utf-8")
    assert f"already on disk: pick `{FP8}` instead (precision fp16 -\\> fp8\\_e4m3fn)" in page
    assert f"**Replace the drifted file** `{CLIP_VISION}`" in page
    assert (
        f"**Replace the drifted file** `{TEXT_ENCODER}`" in page and "### Waiting for downloads, a drifted file" in page
    )
    assert "Declared hashes: 3 of 3 files verified" in page


def test_a_reupload_under_the_same_name_and_size_is_found_next_cycle(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home)
    assert [d["installed_as"] for d in cycle(ctx)["drift"]] == [CLIP_VISION, TEXT_ENCODER]
    quiet = cycle(ctx)
    assert quiet["counts"]["hashed_files"] == 3  # the file is left as it was: nothing is hashed again
    assert STAGE_RUNNERS["verify"](ctx).counts["hashed_files"] == 0
    vae = comfy_tree.root / "models" / "vae" / VAE
    before = vae.stat()
    safetensors(vae, os.urandom(3000))  # the author's new upload: same name, same size, other bytes
    os.utime(vae, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    after = cycle(ctx)
    assert after["counts"]["hashed_files"] == 1
    drifted = next(d for d in after["drift"] if d["installed_as"] == VAE)
    assert drifted["kind"] == "mismatch" and drifted["actual_sha256"] == sha(vae)


def test_budget_carries_over_to_the_next_cycles(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home, budget=1)  # less than any file: one file per cycle
    first = cycle(ctx)
    assert first["progress"]["hashed_files"] == 1 and first["progress"]["files_pending"] == 2
    # The truncated file is drift before it is hashed: its header says so.
    assert TEXT_ENCODER in {d["installed_as"] for d in first["drift"]}
    page = (ctx.config.reports_dir / "master_status.md").read_text(encoding="utf-8")
    assert "Declared hashes: 1 of 3 files verified" in page and "2 pending" in page
    second = cycle(ctx)
    assert second["progress"]["hashed_files"] == 1 and second["progress"]["files_verified"] == 2
    third = cycle(ctx)
    assert third["progress"]["files_pending"] == 0
    assert len(hashing.HashStore(ctx.state_dir / hashing.FILE).load().files) == 3
    assert STAGE_RUNNERS["verify"](ctx).detail.startswith("nothing changed")
    assert sorted(d["installed_as"] for d in third["drift"]) == [CLIP_VISION, TEXT_ENCODER]


def test_zero_budget_hashes_nothing(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home, budget=0)
    found = cycle(ctx)
    assert found["progress"]["hashed_files"] == 0 and found["progress"]["files_pending"] == 3
    assert not (ctx.state_dir / hashing.FILE).exists()


def test_alternatives_carry_the_download_size_from_search_or_the_queue() -> None:
    scan = {
        "workflows": [
            {
                "workflow": w,
                "models": [
                    {
                        "name": name,
                        "folder": folder,
                        "status": "missing",
                        "active": True,
                        "origins": [{"node_type": "CheckpointLoaderSimple", "input": "ckpt_name"}],
                    }
                ],
            }
            for w, name, folder in (
                ("a", "v1-5-pruned-emaonly.ckpt", "checkpoints"),
                ("b", "v1-5-pruned-emaonly.ckpt", "checkpoints"),
                ("c", "sdxl_fp16.safetensors", "checkpoints"),
            )
        ]
    }
    model_cache = {
        "folders": {
            "checkpoints": {
                "paths": ["/m"],
                "files": [
                    {"name": "v1-5-pruned-emaonly.safetensors", "dir": 0, "size": 10},
                    {"name": "sdxl_bf16.safetensors", "dir": 0, "size": 20},
                ],
            }
        }
    }
    results = [{"type": "checkpoints", "name": "v1-5-pruned-emaonly.ckpt", "status": "FOUND", "size": 4_265_380_512}]
    queue = {"tasks": [{"folder": "checkpoints", "name": "sdxl_fp16.safetensors", "size": 6_938_078_334}]}
    sizes = verify._download_sizes(results, queue)
    found = verify.alternatives(copy.deepcopy(scan), VariantIndex.from_cache(model_cache), sizes, False)
    assert [(a["name"], a["download_size"], a["workflows"]) for a in found] == [
        ("v1-5-pruned-emaonly.ckpt", 4_265_380_512, ["a", "b"]),
        ("sdxl_fp16.safetensors", 6_938_078_334, ["c"]),
    ]
    assert found[1]["variants"][0]["differs"] == ["precision fp16 -> bf16"]


def test_a_file_shorter_than_its_published_size_is_truncated_before_it_is_hashed(tmp_path: Path) -> None:
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"x" * 100)
    target = verify.Target(str(model), "checkpoints", "model.ckpt")
    target.expectations[SHA] = verify.Expectation(SHA, "search", "https://civitai.com/x", 1000, {"w"})
    stat = hashing.stat_of(model)
    assert stat is not None
    (finding,) = verify.drift_findings({str(model): target}, {str(model): stat}, {})
    assert finding["kind"] == "truncated" and finding["actual_sha256"] is None
    assert finding["expected_size"] == 1000 and finding["hash_source"] == "search"
    assert verify.drift_findings({str(model): target}, {str(model): stat}, {str(model): SHA}) == []


SHA = "c" * 64


def variant_names(document: dict[str, Any]) -> list[str]:
    (entry,) = document["alternatives"]
    return [v["installed_as"] for v in entry["variants"]]


def test_variants_found_last_cycle_are_kept_until_the_model_cache_changes(comfy_tree: ComfyTree, home: Path) -> None:
    ctx = make_install(comfy_tree, home)
    first = cycle(ctx)
    assert variant_names(first) == [FP8, GGUF]
    memo = artifacts.read(ctx.state_dir / verify.INPUTS, "verify_inputs")["variants"]
    assert len(memo["some"]) == 1 and memo["none"] == []
    # Another workflow that misses nothing new: verify runs again (scan.json changed) and takes the variants
    # it found from the memo, not from the index, which is never built.
    comfy_tree.workflow("other.json", {"nodes": [], "links": [], "version": 0.4})
    built: list[str] = []
    folder = VariantIndex.folder

    def spy(index: VariantIndex, name: str) -> Any:
        built.append(name)
        return folder(index, name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(VariantIndex, "folder", spy)
        second = cycle(ctx)
    assert second["fingerprint"] != first["fingerprint"]  # verified again, not left as it was
    assert variant_names(second) == [FP8, GGUF] and built == []
    # A new variant on disk changes the model cache: the variants are looked for again, and it is one.
    bf16 = "wan2.1_flf2v_720p_14B_bf16.safetensors"
    safetensors(comfy_tree.root / "models" / "diffusion_models" / bf16, os.urandom(900))
    assert variant_names(cycle(ctx)) == [bf16, FP8, GGUF]


def test_an_installed_file_a_search_answer_gives_a_hash_for_is_verified() -> None:
    workflow = {
        "workflow": "w.json",
        "installed_models": [
            {"active": True, "folder": "loras", "name": "a.safetensors", "installed_as": "sub/a.safetensors"},
            {"active": True, "folder": "loras", "name": "b.safetensors", "installed_as": "b.safetensors"},
            {"active": True, "folder": None, "name": "c.safetensors", "installed_as": "c.safetensors"},
        ],
        "models": [],
    }
    part = verify.verify_part(workflow)
    results = {("loras", "a.safetensors"): {"status": "FOUND", "sha256": SHA, "url": "u", "size": 5}}
    needs = verify.scan_needs([part], results, count_inactive=False)
    (kept,) = needs.installed["workflows"]
    assert [(m["name"], m["installed_as"]) for m in kept["installed_models"]] == [
        ("a.safetensors", "sub/a.safetensors")
    ]
    assert verify.scan_needs([part], {}, count_inactive=False).installed == {"workflows": []}


def test_the_found_answers_are_read_from_search_json_in_either_layout(tmp_path: Path) -> None:
    def text(name: str, status: Status) -> str:
        result = SearchResult(name, "loras", status, "declared", Evidence.DECLARED, url="https://h/x", sha256=SHA)
        return artifacts.part_text({**result.to_json(), "workflows": ["w"]}, "search", "result", "t")

    head = {
        "cycle_id": "c",
        "generated_at": "2026-05-01T12:00:00+00:00",
        "offline": True,
        "backend_order": [],
        "model_list": None,
        "results": [],
        "counts": {s.value: 0 for s in Status},
        "requests": {},
        "cache_hits": 0,
    }
    path = tmp_path / "search.json"
    artifacts.write_assembled(
        path, head, "results", [text("A.pt", Status.FOUND), text("b.pt", Status.UNCERTAIN)], "search"
    )
    outcome = StageOutcome("verify")
    expected = {
        ("loras", "a.pt"): {
            "name": "A.pt",
            "type": "loras",
            "status": "FOUND",
            "sha256": SHA,
            "url": "https://h/x",
            "size": None,
        }
    }
    assert verify.found_results(path, outcome) == expected and outcome.ok
    artifacts.write(path, artifacts.read(path, "search"), "search", indent=2)
    assert verify.found_results(path, outcome) == expected and outcome.ok
    artifacts.write_assembled(
        path, head, "results", [text("A.pt", Status.FOUND).replace('"sha256":"', '"sha256":7,"x":"')], "search"
    )
    assert verify.found_results(path, outcome) == {}
    assert not outcome.ok and "search.json (line 2)" in outcome.errors[0]
    # A broken line further on is named by its number; a file cut inside its list is an error naming it.
    broken = text("c.pt", Status.FOUND).replace('"sha256":"', '"sha256":7,"x":"')
    lines = [text("b.pt", Status.UNCERTAIN), text("A.pt", Status.FOUND), text("d.pt", Status.UNCERTAIN), broken]
    artifacts.write_assembled(path, head, "results", lines, "search")
    outcome = StageOutcome("verify")
    assert verify.found_results(path, outcome) == {}
    assert not outcome.ok and "search.json (line 5)" in outcome.errors[0]
    artifacts.write_assembled(path, head, "results", lines[:3], "search")
    path.write_bytes(path.read_bytes().rsplit(b"\n", 2)[0] + b"\n")
    outcome = StageOutcome("verify")
    assert verify.found_results(path, outcome) == {}
    assert not outcome.ok and outcome.errors[0].startswith(f"{path}: ")


def test_verify_part_keys_installed_names_by_their_lookup_key_and_keeps_its_memo_small(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def installed(name: str, folder: str | None = "loras") -> dict[str, Any]:
        return {"folder": folder, "name": name, "installed_as": name.upper(), "declared": []}

    workflow = {
        "workflow": "w.json",
        "installed_models": [installed("Sub\\A.safetensors"), installed(" b.safetensors "), installed("c", None)],
        "models": [],
    }
    expected = [
        "w.json",
        [],
        "loras\x00sub/a.safetensors\x01loras\x00b.safetensors",
        "Sub\\A.safetensors\x00SUB\\A.SAFETENSORS\x01 b.safetensors \x00 B.SAFETENSORS ",
        [],
    ]
    monkeypatch.setattr(verify, "_LOOKUP_KEYS_MAX", 1)
    monkeypatch.setattr(verify, "_lookup_keys", {})
    assert verify.verify_part(workflow) == expected
    assert verify.verify_part(workflow) == expected  # the memo was full: cleared, made again
    assert len(verify._lookup_keys) <= 2


def test_drift_from_the_heads_read_while_hashing_is_what_reading_the_files_gives(tmp_path: Path) -> None:
    # A whole safetensors file, one whose header does not fit, one shorter than 8 bytes, and one that is not a
    # safetensors file: each hashed (its first bytes kept), then its drift found with and without them.
    files = {
        "whole.safetensors": safetensors(tmp_path / "whole.safetensors", b"data"),
        "cut.safetensors": safetensors(tmp_path / "cut.safetensors", b"", 10**6),
        "tiny.safetensors": tmp_path / "tiny.safetensors",
        "model.ckpt": tmp_path / "model.ckpt",
    }
    files["tiny.safetensors"].write_bytes(b"abc")
    files["model.ckpt"].write_bytes(b"\xff" * 64)
    found = {}
    for name, path in files.items():
        target = verify.Target(str(path), "checkpoints", name)
        target.expectations[SHA] = verify.Expectation(SHA, "declared", None, None, {"w"})
        found[str(path)] = target
    stats = {p: s for p in found if (s := hashing.stat_of(p)) is not None}
    store = hashing.HashStore(tmp_path / "hashes.json")
    heads: dict[str, bytes] = {}
    known, progress, errors = verify.hash_within_budget(found, stats, store, 10**9, "now", heads=heads)
    assert errors == [] and progress.hashed_files == 4 and set(heads) == set(found)
    assert heads[str(files["tiny.safetensors"])] == b"abc"
    with_heads = verify.drift_findings(found, stats, known, heads)
    assert with_heads == verify.drift_findings(found, stats, known)
    kinds = {Path(d["path"]).name: d["kind"] for d in with_heads}
    assert kinds == {
        "whole.safetensors": "mismatch",
        "cut.safetensors": "truncated",
        "tiny.safetensors": "truncated",
        "model.ckpt": "mismatch",
    }
    # A file changed after it was hashed is read again (its stat is no longer the one its head was read at).
    files["whole.safetensors"].write_bytes((10**6).to_bytes(8, "little") + b"{}")
    stats[str(files["whole.safetensors"])] = hashing.stat_of(files["whole.safetensors"])  # type: ignore[assignment]
    del heads[str(files["whole.safetensors"])]
    again = verify.drift_findings(found, stats, known, heads)
    assert {Path(d["path"]).name: d["kind"] for d in again}["whole.safetensors"] == "truncated"


def test_the_file_locator_finds_a_name_in_its_first_directory() -> None:
    model_cache = {
        "folders": {
            "loras": {
                "paths": ["/a/loras", "/b/loras"],
                "files": [
                    {"name": "x.safetensors", "dir": 1, "size": 1},
                    {"name": "sub/y.safetensors", "dir": 0, "size": 2},
                    {"name": "x.safetensors", "dir": 0, "size": 3},  # a later listing of the same name: shadowed
                ],
            },
            "vae": {"paths": ["/a/vae"], "files": []},
        }
    }
    locator = verify.FileLocator(model_cache)
    assert locator.get(("loras", "x.safetensors")) == "/b/loras/x.safetensors"
    assert locator.get(("loras", "sub/y.safetensors")) == "/a/loras/sub/y.safetensors"
    assert locator.get(("loras", "z.safetensors")) is None
    assert locator.get(("vae", "x.safetensors")) is None
    assert locator.get(("unknown", "x.safetensors")) is None
