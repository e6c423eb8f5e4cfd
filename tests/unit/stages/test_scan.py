"""The scan stage on real files: cache, intake and scan run on a small install in tmp_path."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from comfywatchman import artifacts, config
from comfywatchman.comfy.inventory import ModelIndex
from comfywatchman.stage_runner import STAGE_RUNNERS
from comfywatchman.stages import scan, scan_kept, scan_parts
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.workflow.store import RequirementStore
from tests.helpers.comfy_tree import ComfyTree, ui_node, ui_workflow
from tests.unit.comfy.test_server import comfy_url  # noqa: F401 - the fake server fixture
from tests.unit.workflow.test_images import png, text


def make_ctx(tree: ComfyTree, home: Path, extra_toml: str = "") -> StageContext:
    toml = home / "config.toml"
    toml.write_text(
        '[intake.sources.comfyui]\npaths = ["{comfyui_root}/user/*/workflows"]\n'
        'include = ["*.json", "*.png", "*.webp"]\n' + extra_toml,
        encoding="utf-8",
    )
    cfg = config.load(config_file=toml, flags={"comfyui_root": tree.root, "home": home, "offline": True}, env={})
    return StageContext(cfg, "test-cycle")


def cycle(ctx: StageContext) -> StageOutcome:
    for stage in ("cache", "intake"):
        assert STAGE_RUNNERS[stage](ctx).ok
    return scan.run(ctx)


def scanned(ctx: StageContext) -> dict[str, dict[str, Any]]:
    document = artifacts.read(ctx.state_dir / "scan.json", "scan")
    return {w["workflow"]: w for w in document["workflows"]}


def by_name(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every model requirement of an entry by name: the full ones, and the installed ones in short."""
    found = {m["name"]: m for m in entry["models"]}
    found.update({m["name"]: {**m, "status": "installed"} for m in entry["installed_models"]})
    return found


def node_states(entry: dict[str, Any]) -> dict[str, str]:
    """Every node type of an entry with its state: the full ones and those listed by name."""
    return {**entry["provided_nodes"], **{n["class_type"]: n["state"] for n in entry["nodes"]}}


def test_scan_compares_with_install_and_flags_invalid_names(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.model("checkpoints", "SDXL/base.safetensors")
    comfy_tree.model("embeddings", "EasyNegative.safetensors")
    comfy_tree.pack("ComfyUI-Old.disabled", ["OldNode"])
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["SDXL\\base.safetensors"]),
                ui_node(2, "LoraLoader", ["../../secrets.safetensors", 1, 1]),
                ui_node(3, "CLIPTextEncode", ["embedding:EasyNegative, embedding:missing_neg"]),
                ui_node(4, "VAELoader", ["gone.safetensors"], mode=4),
                ui_node(5, "OldNode", []),
                ui_node(6, "KSampler", [1, "fixed", 20, 7, "euler", "normal", 1]),
                ui_node(7, "SetNode", []),
            ]
        ),
    )
    ctx = make_ctx(comfy_tree, home)
    outcome = cycle(ctx)
    assert outcome.ok, outcome.errors
    entry = scanned(ctx)["a.json"]
    found = by_name(entry)
    assert found["SDXL\\base.safetensors"]["status"] == "installed"
    assert (found["../../secrets.safetensors"]["status"], found["../../secrets.safetensors"]["looked_in"]) == (
        "invalid",
        [],
    )
    assert found["EasyNegative"]["installed_as"] == "EasyNegative.safetensors"
    assert found["missing_neg"]["status"] == "missing"
    assert found["missing_neg"]["looked_in"] == [str(comfy_tree.root / "models" / "embeddings")]
    assert (found["gone.safetensors"]["status"], found["gone.safetensors"]["active"]) == ("missing", False)
    nodes = {n["class_type"]: n for n in entry["nodes"]}
    assert nodes["OldNode"]["state"] == "disabled" and nodes["OldNode"]["packs"][0]["name"] == "ComfyUI-Old"
    assert "KSampler" not in nodes and node_states(entry)["KSampler"] == "core"
    assert nodes["SetNode"]["state"] == "missing"  # KJNodes is not installed: the pack is what is missing
    # installed requirements are kept in short, everything else in full
    assert entry["installed_models"] == [
        {
            "name": "SDXL\\base.safetensors",
            "folder": "checkpoints",
            "installed_as": "SDXL/base.safetensors",
            "active": True,
        },
        {"name": "EasyNegative", "folder": "embeddings", "installed_as": "EasyNegative.safetensors", "active": True},
    ]
    assert all(m["status"] != "installed" for m in entry["models"])
    # the bypassed VAE is listed but not counted
    assert outcome.counts["missing_models"] == 2


def test_scan_reads_png_workflows_and_reports_unreadable_files(comfy_tree: ComfyTree, home: Path) -> None:
    workflow = ui_workflow([ui_node(1, "UNETLoader", ["flux.safetensors", "default"])])
    comfy_tree.raw_workflow("render.png", png(text("workflow", json.dumps(workflow))))
    comfy_tree.raw_workflow("broken.json", b"{not json")
    ctx = make_ctx(comfy_tree, home)
    outcome = cycle(ctx)
    # A file that cannot be read is a finding (its entry's error), not a failure of the stage.
    assert outcome.ok and not outcome.errors and outcome.counts["errors"] == 1
    entries = scanned(ctx)
    assert (entries["render.png"]["format"], entries["render.png"]["container"]) == ("ui", "png")
    assert by_name(entries["render.png"])["flux.safetensors"]["folder"] == "diffusion_models"
    assert entries["broken.json"]["error"].startswith(str(comfy_tree.workflows / "broken.json"))
    assert entries["broken.json"]["error"].endswith(
        "(Expecting property name enclosed in double quotes at line 1 column 2)"
    )


def test_scan_reuses_unchanged_workflows_and_skips_when_nothing_changed(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["b.safetensors"])]))
    ctx = make_ctx(comfy_tree, home)
    first = cycle(ctx)
    assert (first.counts["parsed"], first.counts["reused"]) == (2, 0)
    written = (ctx.state_dir / "scan.json").stat().st_mtime_ns

    again = cycle(ctx)
    assert again.detail.startswith("nothing changed since cycle test-cycle")
    assert (ctx.state_dir / "scan.json").stat().st_mtime_ns == written

    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["b2.safetensors"])]))
    comfy_tree.model("checkpoints", "a.safetensors")
    changed = cycle(ctx)
    assert (changed.counts["parsed"], changed.counts["reused"]) == (1, 1)
    entries = scanned(ctx)
    assert entries["a.json"]["reused"] and by_name(entries["a.json"])["a.safetensors"]["status"] == "installed"
    assert "b2.safetensors" in by_name(entries["b.json"])


@pytest.mark.parametrize("damage", ["edited", "replaced", "removed"])
def test_a_scan_json_changed_since_the_scan_wrote_it_is_written_again(
    damage: str, comfy_tree: ComfyTree, home: Path
) -> None:
    # Nothing the scan reads changed, but scan.json is not the file it wrote (a disk fault, a hand, a restore):
    # kept, every stage after the scan would fail on it in every cycle from now on.
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    path = ctx.state_dir / "scan.json"
    good = path.read_bytes()
    if damage == "edited":
        path.write_bytes(b'{"broken": \n')
    elif damage == "replaced":
        path.write_bytes(good.replace(b'"a.safetensors"', b'"z.safetensors"'))
    else:
        path.unlink()
    again = cycle(ctx)
    assert not again.detail.startswith("nothing changed") and again.ok

    def entries(text: bytes) -> list[dict[str, object]]:  # as the scan made them, kept now or parsed then
        return [{k: v for k, v in e.items() if k != "reused"} for e in json.loads(text)["workflows"]]

    assert entries(path.read_bytes()) == entries(good)
    assert cycle(ctx).detail.startswith("nothing changed since cycle")


def test_scan_parses_in_worker_processes_when_many_changed(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MIN_PARALLEL", 2)
    for i in range(6):
        comfy_tree.workflow(f"w{i}.json", ui_workflow([ui_node(1, "LoraLoader", [f"l{i}.safetensors", 1, 1])]))
    comfy_tree.raw_workflow("bad.json", b"[]")
    ctx = make_ctx(comfy_tree, home, "[scan]\nworkers = 2\n")
    outcome = cycle(ctx)
    assert outcome.counts["parsed"] == 7 and outcome.counts["errors"] == 1 and outcome.ok
    entries = scanned(ctx)
    assert [next(iter(by_name(entries[f"w{i}.json"]))) for i in range(6)] == [f"l{i}.safetensors" for i in range(6)]


def test_scan_takes_server_as_truth_when_it_answers(comfy_tree: ComfyTree, home: Path, comfy_url: str) -> None:  # noqa: F811
    comfy_tree.model("checkpoints", "other.ckpt")  # on disk, but the server's list decides
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["SDXL/base.safetensors"]),
                ui_node(2, "UNETLoader", ["not-listed.safetensors", "default"]),
                ui_node(3, "ImageResizeKJ", []),
                ui_node(4, "KSampler", []),
            ]
        ),
    )
    ctx = make_ctx(comfy_tree, home, f'[comfyui]\nurl = "{comfy_url}"\n')
    assert cycle(ctx).ok
    document = artifacts.read(ctx.state_dir / "scan.json", "scan")
    assert document["server"] == comfy_url
    entry = document["workflows"][0]
    found = by_name(entry)
    assert (found["SDXL/base.safetensors"]["status"], found["SDXL/base.safetensors"]["checked_by"]) == (
        "installed",
        "server",
    )
    assert found["not-listed.safetensors"]["status"] == "missing"
    nodes = {n["class_type"]: n for n in entry["nodes"]}
    assert node_states(entry)["ImageResizeKJ"] == "installed"
    assert (nodes["KSampler"]["state"], nodes["KSampler"]["checked_by"]) == ("missing", "server")  # not served


def test_an_unchanged_install_keeps_the_entries_of_unchanged_workflows(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.model("checkpoints", "a.safetensors")
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["b.safetensors"])]))
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    before = scanned(ctx)
    assert (ctx.state_dir / "requirements.pack").read_bytes().count(b"\n") == 2

    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["v.safetensors"])]))
    changed = cycle(ctx)
    assert (changed.counts["parsed"], changed.counts["reused"]) == (1, 1)
    after = scanned(ctx)
    assert after["a.json"] == {**before["a.json"], "reused": True}
    assert [m["name"] for m in after["b.json"]["models"]] == ["v.safetensors"]
    # the file is whole, canonical JSON: what dumps makes of the document, one workflow per line
    text = (ctx.state_dir / "scan.json").read_text(encoding="utf-8")
    assert text.replace("\n", "") + "\n" == artifacts.dumps(json.loads(text), indent=None)
    assert len(text.splitlines()) == 2 + len(json.loads(text)["workflows"])

    # a scan.json edited by hand is not trusted: every workflow is compared anew, from the store
    document = json.loads(text)
    document["workflows"][0]["installed_models"] = []
    (ctx.state_dir / "scan.json").write_text(json.dumps(document), encoding="utf-8")
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["w.safetensors"])]))
    again = cycle(ctx)
    assert (again.counts["parsed"], again.counts["reused"]) == (1, 1)
    assert scanned(ctx)["a.json"]["installed_models"][0]["installed_as"] == "a.safetensors"


def test_a_lost_or_torn_store_only_means_parsing_again(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    pack = ctx.state_dir / "requirements.pack"
    pack.write_bytes(pack.read_bytes()[:-20])
    comfy_tree.model("checkpoints", "a.safetensors")  # the install changes: every workflow is compared anew
    outcome = cycle(ctx)
    assert outcome.ok and (outcome.counts["parsed"], outcome.counts["reused"]) == (1, 0)
    assert scanned(ctx)["a.json"]["installed_models"][0]["name"] == "a.safetensors"
    assert RequirementStore(pack, json.loads((ctx.state_dir / "scan.json").read_text())["settings_hash"]).get(
        scanned(ctx)["a.json"]["sha256"]
    )


def test_node_verdicts_follow_installed_packs_manager_entries_and_the_workflows_word(
    comfy_tree: ComfyTree, home: Path
) -> None:
    manager = comfy_tree.root / "custom_nodes" / "ComfyUI-Manager"
    manager.mkdir(parents=True)
    (manager / "extension-node-map.json").write_text(
        json.dumps(
            {
                "https://github.com/rgthree/rgthree-comfy": [[], {"nodename_pattern": " \\(rgthree\\)$"}],
                "https://github.com/kijai/ComfyUI-KJNodes": [["ImageResizeKJ"], {"title_aux": "KJNodes"}],
                "https://github.com/someone/KJ-Fork": [["ImageResizeKJ"], {"title_aux": "Fork"}],
            }
        ),
        encoding="utf-8",
    )
    # Its mapping is built at import time from data a static reading cannot see: only the Manager's pattern tells.
    rgthree = comfy_tree.root / "custom_nodes" / "rgthree-comfy"
    (rgthree / ".git").mkdir(parents=True)
    (rgthree / ".git" / "config").write_text('[remote "origin"]\n\turl = https://github.com/rgthree/rgthree-comfy\n')
    (rgthree / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {c.NAME: c for c in load_all()}\n")
    comfy_tree.pack("My-Installed", ["OldType"], version="1.0")  # pyproject name: my-installed
    made = {"cnr_id": "comfyui-kjnodes", "aux_id": "kijai/ComfyUI-KJNodes", "ver": "1.1.9"}
    comfy_tree.workflow(
        "w.json",
        ui_workflow(
            [
                ui_node(1, "Seed (rgthree)", [1]),
                ui_node(2, "ImageResizeKJ", [], properties=made),
                ui_node(3, "NewType", [], properties={"cnr_id": "my-installed", "ver": "2.0"}),
                ui_node(4, "FutureCoreNode", [], properties={"cnr_id": "comfy-core", "ver": "0.9"}),
                ui_node(5, "Hostile", [], properties={"cnr_id": "x; rm -rf ~", "aux_id": "a/b c"}),
            ]
        ),
    )
    ctx = make_ctx(comfy_tree, home)
    assert cycle(ctx).ok
    entry = scanned(ctx)["w.json"]
    assert entry["provided_nodes"]["Seed (rgthree)"] == "installed"
    nodes = {n["class_type"]: n for n in entry["nodes"]}
    kj = nodes["ImageResizeKJ"]
    assert kj["made_with"] == made
    assert [(p["registry_id"], p["repo"], p["install"], p["from_workflow"]) for p in kj["packs"]] == [
        (
            "comfyui-kjnodes",
            "https://github.com/kijai/ComfyUI-KJNodes",
            "git clone https://github.com/kijai/ComfyUI-KJNodes",
            True,
        )
    ]
    assert nodes["NewType"]["packs"] == [
        {
            "name": "My-Installed",
            "installed": True,
            "note": "pack installed, node type not found: the pack may have failed to import or be outdated",
        }
    ]
    assert nodes["FutureCoreNode"]["packs"][0]["name"] == "ComfyUI"
    assert "update ComfyUI" in nodes["FutureCoreNode"]["packs"][0]["note"]
    # ids that are no registry id or owner/repo are not echoed into a command: no pack is named
    assert nodes["Hostile"]["made_with"]["cnr_id"] == "x; rm -rf ~" and nodes["Hostile"]["packs"] == []


def test_a_provided_node_type_is_provided_whatever_pack_each_node_names(comfy_tree: ComfyTree, home: Path) -> None:
    # The scan remembers a type found provided by its name alone: the pack a node names matters only to a type
    # that is not there, whose verdict (the pack to install) is made for each pack named.
    comfy_tree.pack("My-Installed", ["OldType"], version="1.0")
    comfy_tree.workflow(
        "a.json",
        ui_workflow(
            [
                ui_node(1, "OldType", [], properties={"cnr_id": "some-other-pack", "ver": "1.0"}),
                ui_node(2, "GoneType", [], properties={"cnr_id": "first-pack", "ver": "1.0"}),
            ]
        ),
    )
    comfy_tree.workflow(
        "b.json",
        ui_workflow(
            [
                ui_node(1, "OldType", []),
                ui_node(2, "GoneType", [], properties={"cnr_id": "second-pack", "ver": "1.0"}),
                ui_node(3, "CheckpointLoaderSimple", ["a.safetensors"], properties={"cnr_id": "my-installed"}),
            ]
        ),
    )
    ctx = make_ctx(comfy_tree, home)
    assert cycle(ctx).ok
    entries = scanned(ctx)
    for name in ("a.json", "b.json"):
        assert entries[name]["provided_nodes"]["OldType"] == "installed"
        assert [n["class_type"] for n in entries[name]["nodes"]] == ["GoneType"]
    assert entries["b.json"]["provided_nodes"]["CheckpointLoaderSimple"] == "core"
    assert [p["registry_id"] for p in entries["a.json"]["nodes"][0]["packs"]] == ["first-pack"]
    assert [p["registry_id"] for p in entries["b.json"]["nodes"][0]["packs"]] == ["second-pack"]


# One bad file stops nothing (issue 10): it is its own error row, and the other files are scanned as usual.


def test_a_lone_surrogate_does_not_stop_scan_json_being_written(comfy_tree: ComfyTree, home: Path) -> None:
    node = b'{"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["\\ud800.safetensors"]}'
    comfy_tree.raw_workflow("cut.json", b'{"nodes": [' + node + b"]}")
    comfy_tree.workflow("good.json", ui_workflow([ui_node(1, "LoraLoader", ["good.safetensors", 1, 1])]))
    ctx = make_ctx(comfy_tree, home)
    outcome = cycle(ctx)
    assert outcome.ok, outcome.errors
    entries = scanned(ctx)
    assert "\ufffd.safetensors" in by_name(entries["cut.json"])
    assert "good.safetensors" in by_name(entries["good.json"])


def test_an_image_without_a_workflow_is_counted_not_an_error(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.raw_workflow("photo.png", png())
    comfy_tree.workflow("good.json", ui_workflow([ui_node(1, "LoraLoader", ["good.safetensors", 1, 1])]))
    ctx = make_ctx(comfy_tree, home)
    outcome = cycle(ctx)
    assert outcome.ok and (outcome.counts["not_workflows"], outcome.counts["errors"]) == (1, 0)
    assert "1 images without a workflow" in outcome.detail
    document = artifacts.read(ctx.state_dir / "scan.json", "scan")
    assert [w["workflow"] for w in document["workflows"]] == ["good.json"]
    assert document["not_workflows"][0]["workflow"] == "photo.png"
    assert "PNG image without an embedded workflow" in document["not_workflows"][0]["reason"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"nodes": [' + b"[" * 3000 + b"]" * 3000 + b"]}", "nested deeper than 1024 levels"),
        (json.dumps({"nodes": [{"id": i, "type": f"T{i}"} for i in range(10_001)]}).encode(), "more than 10000 node"),
        (b'{"nodes": [{"id": 1, "type": "LoraLoader", "inputs": 5, "widgets_values": ["x.safetensors"]}]}', None),
        (b'{"nodes": [], "big": ' + b" " * 3_000_000 + b"1}", "larger than 2 MB"),
    ],
)
def test_each_bad_file_is_its_own_error_row(
    comfy_tree: ComfyTree, home: Path, content: bytes, reason: str | None
) -> None:
    comfy_tree.raw_workflow("bad.json", content)
    comfy_tree.workflow("good.json", ui_workflow([ui_node(1, "LoraLoader", ["good.safetensors", 1, 1])]))
    ctx = make_ctx(comfy_tree, home, "[scan]\nmax_workflow_mb = 2\n")
    outcome = cycle(ctx)
    assert outcome.ok, outcome.errors
    entries = scanned(ctx)
    assert "good.safetensors" in by_name(entries["good.json"])
    if reason is None:  # read despite the broken field
        assert entries["bad.json"]["error"] is None and "x.safetensors" in by_name(entries["bad.json"])
    else:
        assert entries["bad.json"]["error"].startswith(str(comfy_tree.workflows / "bad.json"))
        assert reason in entries["bad.json"]["error"]


def test_a_worker_whose_parent_died_before_it_started_exits(tmp_path: Path) -> None:
    """The scan forks its workers; if the cycle is killed just then, a worker's os.getppid() is already 1,
    and a watcher comparing with that would wait forever. Here the "cycle" exits at once after the fork."""
    script = tmp_path / "orphan.py"
    pid_file = tmp_path / "worker.pid"
    script.write_text(
        "import os, sys, time\n"
        "from comfywatchman.stages import scan\n"
        "parent = os.getpid()\n"
        "if os.fork() == 0:\n"
        "    while os.getppid() == parent:\n"
        "        time.sleep(0.01)\n"
        f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "    scan._init_worker(None, parent)\n"
        "    time.sleep(30)\n"
        "    os._exit(0)\n"
        "os._exit(0)\n",
        encoding="utf-8",
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=30)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    for _ in range(60):
        if not _alive(worker):
            return
        time.sleep(0.05)
    os.kill(worker, 9)
    pytest.fail("the orphaned worker was still alive 3 s after its parent died")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for this purpose (reaped by init shortly)
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _lines(ctx: StageContext) -> dict[str, bytes]:
    """Each entry line of scan.json by workflow name (without the separating comma)."""
    lines = (ctx.state_dir / "scan.json").read_bytes().split(b"\n")[1:-2]
    return {json.loads(line.rstrip(b","))["workflow"]: line.rstrip(b",") for line in lines}


def test_kept_entries_are_their_last_lines_with_only_what_changed_rewritten(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.model("checkpoints", "a.safetensors")
    a = ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])])
    comfy_tree.workflow("a.json", a)
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["b1.safetensors"])]))
    ctx = make_ctx(comfy_tree, home)
    cycle(ctx)
    first = _lines(ctx)
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["b2.safetensors"])]))
    cycle(ctx)
    second = _lines(ctx)
    assert second["a.json"] == first["a.json"].replace(b'"reused":false', b'"reused":true')
    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["b3.safetensors"])]))
    comfy_tree.workflow("copy of a.json", a)  # the same content under another name
    outcome = cycle(ctx)
    third = _lines(ctx)
    assert third["a.json"] == second["a.json"]  # copied byte for byte
    assert json.loads(third["copy of a.json"]) == {
        **json.loads(third["a.json"]),
        "workflow": "copy of a.json",
        "path": str(comfy_tree.workflows / "copy of a.json"),
    }
    assert (outcome.counts["parsed"], outcome.counts["reused"]) == (1, 2)
    assert outcome.counts["missing_models"] == 1  # b3 (and the counts of the kept entries, none missing)


def test_files_a_dead_worker_left_are_read_by_the_scan_itself(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MIN_PARALLEL", 2)
    for i in range(5):
        comfy_tree.workflow(f"w{i}.json", ui_workflow([ui_node(1, "LoraLoader", [f"l{i}.safetensors", 1, 1])]))

    def lost(self: object, jobs: list[tuple[str, int | None]]) -> Any:
        return iter([(scan.parse_worker.LOST, b"")] * len(jobs))

    monkeypatch.setattr(scan.parse_worker.Workers, "map", lost)
    outcome = cycle(make_ctx(comfy_tree, home, "[scan]\nworkers = 2\n"))
    assert outcome.ok and outcome.counts["parsed"] == 5 and outcome.counts["errors"] == 0
    ctx = make_ctx(comfy_tree, home)
    assert [next(iter(by_name(scanned(ctx)[f"w{i}.json"]))) for i in range(5)] == [
        f"l{i}.safetensors" for i in range(5)
    ]


def test_verdicts_stay_right_when_the_bounded_memo_starts_again(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MEMO_LIMIT", 1)
    comfy_tree.model("loras", "have.safetensors")
    for name in ("a.json", "b.json"):
        nodes = [
            ui_node(i, "LoraLoader", [lora, 1, 1]) for i, lora in enumerate(["have.safetensors", "not.safetensors"])
        ]
        comfy_tree.workflow(name, ui_workflow(nodes))
    ctx = make_ctx(comfy_tree, home)
    assert cycle(ctx).counts["missing_models"] == 1
    for entry in scanned(ctx).values():
        assert {n: m["status"] for n, m in by_name(entry).items()} == {
            "have.safetensors": "installed",
            "not.safetensors": "missing",
        }


def lora_workflows(tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> StageContext:
    """Write ``count`` workflows ``w{i}.json``, each needing the LoRA ``l{i}.safetensors``, with the scan in two
    worker processes from two jobs on; return the context of a home that scans them."""
    monkeypatch.setattr(scan, "MIN_PARALLEL", 2)
    for i in range(count):
        tree.workflow(f"w{i}.json", ui_workflow([ui_node(1, "LoraLoader", [f"l{i}.safetensors", 1, 1])]))
    return make_ctx(tree, home, "[scan]\nworkers = 2\n")


def test_with_workers_the_store_answers_what_it_has_and_the_workers_read_the_rest(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = lora_workflows(comfy_tree, home, monkeypatch, 6)
    cycle(ctx)
    pack = ctx.state_dir / "requirements.pack"
    lines = pack.read_bytes().splitlines(keepends=True)
    pack.write_bytes(b"".join([lines[0][:-30] + b"\n", *lines[1:]]))  # the first line torn
    comfy_tree.workflow("w6.json", ui_workflow([ui_node(1, "LoraLoader", ["l6.safetensors", 1, 1])]))
    comfy_tree.model("loras", "l3.safetensors")  # the install changes: every workflow is compared anew
    outcome = cycle(ctx)
    # the workflow whose line is torn is read again, like the new w6; the five others come from the store
    assert (outcome.counts["parsed"], outcome.counts["reused"]) == (2, 5)
    entries = scanned(ctx)
    assert [next(iter(by_name(entries[f"w{i}.json"]))) for i in range(7)] == [f"l{i}.safetensors" for i in range(7)]
    assert by_name(entries["w3.json"])["l3.safetensors"]["status"] == "installed"


def test_no_worker_is_started_when_the_store_has_every_workflow_to_compare(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = lora_workflows(comfy_tree, home, monkeypatch, 4)
    started: list[int] = []
    real_start = scan.start_workers
    monkeypatch.setattr(
        scan, "start_workers", lambda workers, *rest: started.append(workers) or real_start(workers, *rest)
    )
    cycle(ctx)
    comfy_tree.model("loras", "l1.safetensors")  # the install changes: every workflow is compared anew, from the store
    outcome = cycle(ctx)
    assert started == [2, 1]  # two workers to read the four new files; none for the four the store has
    assert (outcome.counts["parsed"], outcome.counts["reused"]) == (0, 4)
    assert by_name(scanned(ctx)["w1.json"])["l1.safetensors"]["status"] == "installed"


def test_workers_that_cannot_start_leave_the_scan_to_this_process(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan, "MIN_PARALLEL", 2)
    monkeypatch.setattr(scan.parse_worker.sys, "executable", str(home / "no-python-here"))
    for i in range(3):
        comfy_tree.workflow(f"w{i}.json", ui_workflow([ui_node(1, "LoraLoader", [f"l{i}.safetensors", 1, 1])]))
    outcome = cycle(make_ctx(comfy_tree, home, "[scan]\nworkers = 2\n"))
    assert outcome.ok and outcome.counts["parsed"] == 3


def _varied_workflow(lora: str) -> dict[str, Any]:
    """A workflow needing a bit of everything: installed, missing, case-differing, invalid and unknown-folder
    models, prompt embeddings, and node types that are core, installed, disabled, missing, or named by pack."""
    return ui_workflow(
        [
            ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"]),
            ui_node(2, "LoraLoader", [lora, 1, 1]),
            ui_node(3, "VAELoader", ["A.safetensors"], mode=2),
            ui_node(4, "CLIPTextEncode", ["embedding:EasyNegative, embedding:gone_neg"]),
            ui_node(5, "UNETLoader", ["../escape.safetensors", "default"]),
            ui_node(6, "SomePackNode", ["somewhere/odd.pth", "sub\\deep.safetensors"]),
            ui_node(7, "OldNode", []),
            ui_node(8, "NewNode", []),
            ui_node(9, "MissingNode", [], properties={"cnr_id": "missing-pack", "ver": "1.0"}),
            ui_node(10, "KSampler", [1, "fixed", 20, 7, "euler", "normal", 1]),
        ]
    )


def test_a_changed_workflow_on_an_unchanged_install_gets_the_entry_a_fresh_scan_makes(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy_tree.model("checkpoints", "a.safetensors")
    comfy_tree.model("vae", "a.safetensors")
    comfy_tree.model("upscale_models", "sub/deep.safetensors")
    comfy_tree.model("embeddings", "EasyNegative.safetensors")
    comfy_tree.pack("ComfyUI-Old.disabled", ["OldNode"])
    comfy_tree.pack("ComfyUI-New", ["NewNode"])
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["a.safetensors"])]))
    comfy_tree.workflow("b.json", _varied_workflow("style.safetensors"))
    ctx = make_ctx(comfy_tree, home)
    assert cycle(ctx).ok
    maps_read: list[object] = []
    real_load = scan.manager_map.load
    monkeypatch.setattr(scan.manager_map, "load", lambda path: maps_read.append(path) or real_load(path))
    indexed: list[str] = []
    real_index = ModelIndex._index_folder
    monkeypatch.setattr(ModelIndex, "_index_folder", lambda self, f: indexed.append(f) or real_index(self, f))

    # The lora swapped for another: the last entry's verdicts answer all but that name, and no node type
    # needs the node map or the node index.
    comfy_tree.workflow("b.json", _varied_workflow("other-style.safetensors"))
    changed = cycle(ctx)
    assert (changed.counts["parsed"], changed.counts["reused"]) == (1, 1)
    assert maps_read == []
    # The new name's folder, and embeddings (an installed prompt embedding's verdict is not seeded); never every
    # folder, though one name (installed in upscale_models) is looked for in any folder.
    assert sorted(indexed) == ["embeddings", "loras"]
    seeded = scanned(ctx)["b.json"]

    for name in ("scan.json", "scan_inputs.json", "scan_lines.json", "requirements.pack"):
        (ctx.state_dir / name).unlink()
    fresh = scan.run(ctx)
    assert (fresh.counts["parsed"], fresh.counts["reused"]) == (2, 0)
    assert maps_read  # made afresh, every verdict needed the indexes
    assert seeded == scanned(ctx)["b.json"]
    found = by_name(seeded)
    assert found["other-style.safetensors"]["status"] == "missing"
    assert found["A.safetensors"]["note"].startswith("installed as")
    assert found["../escape.safetensors"]["status"] == "invalid"
    assert found["somewhere/odd.pth"]["status"] == "missing"
    assert found["sub\\deep.safetensors"]["installed_as"] == "sub/deep.safetensors"
    assert {m["folder"] for m in seeded["installed_models"]} == {"checkpoints", "embeddings", None}
    assert node_states(seeded) == {
        "CheckpointLoaderSimple": "core",
        "LoraLoader": "core",
        "VAELoader": "core",
        "CLIPTextEncode": "core",
        "UNETLoader": "core",
        "SomePackNode": "missing",
        "OldNode": "disabled",
        "NewNode": "installed",
        "MissingNode": "missing",
        "KSampler": "core",
    }


def test_with_a_server_a_changed_workflow_also_gets_the_entry_a_fresh_scan_makes(
    comfy_tree: ComfyTree,
    home: Path,
    comfy_url: str,  # noqa: F811
) -> None:
    comfy_tree.model("checkpoints", "other.ckpt")
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "CheckpointLoaderSimple", ["x.safetensors"])]))

    def workflow(unet: str) -> dict[str, Any]:
        return ui_workflow(
            [
                ui_node(1, "CheckpointLoaderSimple", ["SDXL/base.safetensors"]),
                ui_node(2, "UNETLoader", [unet, "default"]),
                ui_node(3, "CLIPTextEncode", ["embedding:gone_neg"]),
                ui_node(4, "ImageResizeKJ", []),
                ui_node(5, "KSampler", []),
            ]
        )

    comfy_tree.workflow("b.json", workflow("not-listed.safetensors"))
    ctx = make_ctx(comfy_tree, home, f'[comfyui]\nurl = "{comfy_url}"\n')
    assert cycle(ctx).ok
    comfy_tree.workflow("b.json", workflow("not-listed-either.safetensors"))
    assert cycle(ctx).counts["parsed"] == 1
    seeded = scanned(ctx)["b.json"]
    for name in ("scan.json", "scan_inputs.json", "scan_lines.json", "requirements.pack"):
        (ctx.state_dir / name).unlink()
    assert scan.run(ctx).counts["parsed"] == 2
    assert seeded == scanned(ctx)["b.json"]
    assert by_name(seeded)["SDXL/base.safetensors"]["checked_by"] == "server"


@pytest.mark.parametrize(
    "name",
    [
        "plain.json",
        'quote " and \\ back.json',
        "ctl\x00\x01\x1f\x7f\t\n.json",
        "ünï\u2028\u2029😀.json",
        "bad\udcff.json",
    ],
)
def test_inputs_fingerprint_is_the_content_hash_of_its_inputs(name: str) -> None:
    """The fingerprint is artifacts.content_hash of the install's and the workflows' part, made faster: the
    same value (a fingerprint kept from an earlier cycle still matches), whatever the file names hold."""
    intake = {
        "workflows": [
            {"path": f"/w/{name}", "workflow": name, "source": "comfyui", "sha256": "ab" * 32, "size": 1},
            {"path": "/w/other.json", "workflow": "other.json", "source": "extra", "sha256": "cd" * 32},
        ]
    }
    data = {
        "install": "ef" * 32,
        "workflows": [[w["path"], w["workflow"], w["source"], w["sha256"]] for w in intake["workflows"]],
    }
    try:
        expected: str | type[Exception] = artifacts.content_hash(data)
    except UnicodeEncodeError as exc:  # what a lone surrogate did, and still does
        expected = type(exc)
    if isinstance(expected, str):
        assert scan.inputs_fingerprint("ef" * 32, intake) == expected
        # The fast encoding itself gives it (not only the slow one it falls back to).
        assert hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest() == expected
    else:
        with pytest.raises(expected):
            scan.inputs_fingerprint("ef" * 32, intake)


def test_kept_lines_copied_a_run_at_a_time_are_what_copying_each_line_gives(tmp_path: Path) -> None:
    """``Lines`` copies runs of kept lines as blocks: the file, the digests record and the lines record are
    those that each line's ``KeptEntries.text`` gives, a line that cannot be marked in place included."""

    def entry(n: int, reused: bool, nested: bool = False) -> dict[str, Any]:
        packs = [{"name": "p", "reused": False, "note": '"reused":false'}] if nested else []
        return {
            "nodes": [{"class_type": f"X{n}", "packs": packs}],
            "path": f"/w/{n}.json",
            "reused": reused,
            "sha256": f"{n:064x}",
            "source": "comfyui",
            "workflow": f"{n}.json",
        }

    # 0-2: a run to mark reused (1 with a nested key and a string like it); 3: says true where the record says
    # false (cannot be marked in place: encoded anew, alone); 4: marked again; 5-6: already reused, copied as is;
    # 7: a line the digests record gives no digest for.
    entries = [entry(0, False), entry(1, False, True), entry(2, False), entry(3, True, True), entry(4, False)]
    entries += [entry(5, True), entry(6, True), entry(7, False)]
    texts = [json.dumps(e, sort_keys=True, separators=(",", ":")).encode() for e in entries]
    path = tmp_path / "state" / "scan.json"
    path.parent.mkdir()
    first = b'{"workflows":[\n'
    path.write_bytes(first + b",\n".join(texts) + b"\n]}\n")
    offsets = [len(first) + sum(len(t) + 2 for t in texts[:n]) for n in range(len(texts))]
    lines = {
        e["sha256"]: scan_kept.KeptLine(
            offsets[n], len(texts[n]), (e["workflow"], e["path"], e["source"], e["sha256"]),
            n in (5, 6), [(None, f"m{n}")], [f"N{n}"],
        )
        for n, e in enumerate(entries)
    }  # fmt: skip
    known = {offsets[n]: scan_parts.line_digest(texts[n]) for n in range(7)}
    items = [
        {"workflow": e["workflow"], "path": e["path"], "source": e["source"], "sha256": e["sha256"]} for e in entries
    ]
    from tests.unit.test_validation import SCAN

    head = {**SCAN, "workflows": []}

    def write(by_run: bool, out: Path) -> tuple[scan.Tally, scan_kept.LinesRecord, scan.Recorder]:
        kept = scan_kept.KeptEntries(path, lines, {})
        recorder = scan.Recorder(path)
        recorder._last = dict(known)
        parts = scan.Lines(kept, None, scan.Tally(False), scan_kept.LinesRecord(), recorder)  # type: ignore[arg-type]
        try:
            with artifacts.HeadFirstWriter(out, "workflows", head, "scan") as writer:
                if by_run:
                    parts.write(items, iter(()), writer)
                else:
                    for item in items:
                        kept_line = lines[item["sha256"]]
                        parts._one(item, kept_line.base, kept_line, iter(()), writer)
                writer.finish()
        finally:
            kept.close()
        return parts.tally, parts.record, recorder

    by_run = write(True, tmp_path / "by_run.json")
    by_line = write(False, tmp_path / "by_line.json")
    assert (tmp_path / "by_run.json").read_bytes() == (tmp_path / "by_line.json").read_bytes()
    written = [w for w in (tmp_path / "by_run.json").read_bytes().split(b"\n")[1:] if w.startswith(b"{")]
    assert len(written) == 8
    written = [w.removesuffix(b",") for w in written]
    assert [json.loads(w)["reused"] for w in written] == [True] * 8
    assert written[3] == texts[3]  # encoded anew (the nested key is not the entry's), the same text
    assert written[0] == texts[0].replace(b'"reused":false', b'"reused":true')
    run_tally, run_record, run_digests = by_run
    line_tally, line_record, line_digests = by_line
    assert run_tally == line_tally and run_tally.reused == 8
    assert run_record.entries == line_record.entries and run_record.offset == line_record.offset
    assert run_digests.digests == line_digests.digests
    assert run_digests.digests == [scan_parts.line_digest(w).decode() for w in written]
    assert (run_digests.offsets, run_digests.lengths) == (line_digests.offsets, line_digests.lengths)


def test_a_scan_that_makes_entries_fills_the_packs_of_search_and_verify(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The packs the scan fills are the ones search and verify would make: they add only what the scan left to
    them, and write what a scan that primes nothing leads them to write."""
    from tests.unit.stages.test_reuse import T0, context, make_install, run

    make_install(comfy_tree)
    comfy_tree.workflow("c.json", ui_workflow([ui_node(1, "SomePackNode", ["x"])]))  # a node of no known pack
    (comfy_tree.root / "user" / "default" / "workflows" / "d.json").write_text("{ not json", encoding="utf-8")
    homes = {"primed": tmp_path / "primed", "made": tmp_path / "made"}
    packs = ("search_parts.pack", "verify_parts.pack")
    for name, home in homes.items():
        if name == "made":
            monkeypatch.setattr(scan, "primed_packs", lambda state: [])
        home.mkdir()
        ctx = context(comfy_tree, home, "c1", T0)
        run(ctx, ("cache", "intake", "scan"))
        state = home / "state"
        before = {pack: state.joinpath(pack).read_bytes() if state.joinpath(pack).exists() else None for pack in packs}
        run(ctx, ("search", "verify"))
        after = {pack: state.joinpath(pack).read_bytes() for pack in packs}
        if name == "primed":
            # A line per workflow read; the unreadable one's entry (its error) is left to the stages to add.
            for pack in packs:
                assert before[pack] is not None and before[pack].count(b"\n") == 4
                assert after[pack].startswith(before[pack]) and after[pack].count(b"\n") == 5
        else:
            assert before == dict.fromkeys(packs)
    for pack in packs:
        lines = [sorted(homes[h].joinpath("state", pack).read_bytes().split(b"\n")) for h in homes]
        assert lines[0] == lines[1]
    for artifact in ("search.json", "verify.json", "download_queue.json"):
        documents = [orjson.loads(homes[h].joinpath("state", artifact).read_bytes()) for h in homes]
        for document in documents:
            document.pop("generated_at", None)
            document.pop("fingerprint", None)  # of the inputs' stats, in each home
        assert documents[0] == documents[1]


def report_files(state: Path) -> tuple[dict[bytes, bytes], dict[bytes, Any], list[bytes]]:
    """Return the report's keys the scan kept, the parts in the report's pack by digest, and each workflow line
    of scan.json (its comma left out)."""
    from comfywatchman.reporting import scan_keys

    pack = state / "report_scan_parts.pack"
    head, *rows = pack.read_bytes().removesuffix(b"\n").split(b"\n")
    from comfywatchman.reporting import status_report

    assert head == status_report.PARTS_TAG.encode()
    primed = {row.split(b" ", 2)[0]: orjson.loads(row.split(b" ", 2)[2]) for row in rows}
    lines = [line.removesuffix(b",") for line in (state / "scan.json").read_bytes().split(b"\n")[1:-2]]
    return scan_keys.load(state / scan_keys.FILE), primed, lines


def test_a_scan_hands_the_report_its_digests_and_parts_when_it_makes_many_entries_or_the_report_has_none(
    comfy_tree: ComfyTree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first scan writes the report's digest of every line and its part of every entry made (an unreadable
    workflow's left to the report); a scan that makes a few leaves them to the report; one that makes many
    writes both again: the keys of the lines it copied from the last keys, the parts of those it made alone."""
    from comfywatchman.reporting import parts, status_report
    from tests.unit.stages.test_reuse import T0, context, make_install, run

    make_install(comfy_tree)
    comfy_tree.workflow(
        "c.json", ui_workflow([ui_node(1, "SomePackNode", ["x"]), ui_node(2, "LoraLoader", ["y", 1, 1], mode=4)])
    )
    comfy_tree.raw_workflow("d.json", b"{ not json")
    home = tmp_path / "home"
    home.mkdir()
    state = home / "state"
    run(context(comfy_tree, home, "c1", T0), ("cache", "intake", "scan"))
    keys, primed, lines = report_files(state)
    by_scan = {scan_parts.line_digest(line): line for line in lines}
    assert keys == {key: parts.line_digest(line) for key, line in by_scan.items()}
    made = {
        key: status_report.scanned_part(orjson.loads(line)) for key, line in by_scan.items() if b'"error":null' in line
    }
    assert len(made) == 3 and primed == made
    assert primed[next(k for k, v in by_scan.items() if b"c.json" in v)]["nodes"][0]["class_type"] == "SomePackNode"
    before = {name: (state / name).read_bytes() for name in ("report_scan_keys.bin", "report_scan_parts.pack")}

    comfy_tree.workflow("b.json", ui_workflow([ui_node(1, "VAELoader", ["other.safetensors"])]))
    run(context(comfy_tree, home, "c2", T0), ("cache", "intake", "scan"))  # one made: the report's to read
    assert {name: (state / name).read_bytes() for name in before} == before

    monkeypatch.setattr(scan, "primes_report", lambda state, made: True)  # as when it makes many
    comfy_tree.workflow("a.json", ui_workflow([ui_node(1, "VAELoader", ["third.safetensors"])]))
    run(context(comfy_tree, home, "c3", T0), ("cache", "intake", "scan"))
    keys, primed, lines = report_files(state)
    by_scan = {scan_parts.line_digest(line): line for line in lines}
    # Every line's key but b.json's (made last time, its key kept by no one yet: the report hashes it).
    assert keys == {key: parts.line_digest(line) for key, line in by_scan.items() if b'"b.json"' not in line}
    a_line = next(line for line in lines if b'"a.json"' in line)
    assert primed == {scan_parts.line_digest(a_line): status_report.scanned_part(orjson.loads(a_line))}


def test_the_report_is_primed_when_the_scan_makes_many_entries_or_misses_a_file_of_the_report(home: Path) -> None:
    state = home / "state"
    state.mkdir(parents=True)
    assert scan.primes_report(state, 1) and scan.primes_report(state, scan.MIN_PARALLEL)
    (state / "report_scan_keys.bin").write_bytes(b"")
    assert scan.primes_report(state, 1)
    (state / "report_scan_parts.pack").write_bytes(b"")
    assert not scan.primes_report(state, 1) and not scan.primes_report(state, scan.MIN_PARALLEL - 1)
    assert scan.primes_report(state, scan.MIN_PARALLEL)
