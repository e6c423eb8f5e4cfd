"""Intake: new and changed workflows are acknowledged once; unchanged ones never again."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from comfywatchman import artifacts, availability
from comfywatchman.config import load
from comfywatchman.stages import intake
from comfywatchman.stages.context import StageContext
from tests.helpers.comfy_tree import ComfyTree

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def _ctx(tree: ComfyTree, home: Path, now: datetime = T0, user_toml: str | None = None) -> StageContext:
    config_file = None
    if user_toml:
        config_file = home / "user.toml"
        config_file.write_text(user_toml)
    config = load(config_file, env={}, flags={"comfyui_root": str(tree.root), "home": str(home)}, cwd=home)
    return StageContext(config, "cycle-1", clock=lambda: now)


def _log(home: Path) -> list[dict]:
    return list(artifacts.read_jsonl(home / "state" / "intake_log.jsonl", "intake_log_entry"))


def test_run_acknowledges_new_then_changed_and_never_unchanged(comfy_tree: ComfyTree, home: Path) -> None:
    first = comfy_tree.workflow("a.json", {"nodes": []})
    comfy_tree.workflow("sub/b.json", {"nodes": []})
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.counts == {"workflows": 2, "new": 2, "changed": 0, "removed": 0}
    assert [(r["kind"], Path(r["path"]).name) for r in _log(home)] == [("new", "a.json"), ("new", "b.json")]

    assert intake.run(_ctx(comfy_tree, home, T0 + timedelta(hours=2))).counts["new"] == 0
    assert len(_log(home)) == 2

    first.write_text(json.dumps({"nodes": [{"id": 1, "type": "KSampler"}]}))
    outcome = intake.run(_ctx(comfy_tree, home, T0 + timedelta(hours=4)))
    assert outcome.counts["changed"] == 1
    log = _log(home)
    assert log[-1]["kind"] == "changed" and log[-1]["ts"] == (T0 + timedelta(hours=4)).isoformat()
    document = artifacts.read(home / "state" / "intake.json", "intake")
    assert {w["workflow"] for w in document["workflows"]} == {"a.json", "sub/b.json"}


def test_run_does_not_rehash_when_size_and_mtime_are_unchanged(
    comfy_tree: ComfyTree, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy_tree.workflow("a.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    calls: list[Path] = []
    real = intake.sha256_file
    monkeypatch.setattr(intake, "sha256_file", lambda p: calls.append(p) or real(p))
    intake.run(_ctx(comfy_tree, home))
    assert calls == []


def test_run_touched_but_identical_file_is_not_acknowledged(comfy_tree: ComfyTree, home: Path) -> None:
    path = comfy_tree.workflow("a.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    os.utime(path, ns=(1, 1))
    assert intake.run(_ctx(comfy_tree, home)).counts["changed"] == 0


def test_run_after_a_kill_between_log_and_intake_json_does_not_acknowledge_twice(
    comfy_tree: ComfyTree, home: Path
) -> None:
    comfy_tree.workflow("a.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    (home / "state" / "intake.json").unlink()  # as if the cycle died right after appending the log
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.counts["new"] == 0 and len(_log(home)) == 1


def test_run_survives_a_torn_intake_json(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("a.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    (home / "state" / "intake.json").write_text('{"cycle_id": ')
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.ok and outcome.counts["new"] == 0


def test_run_reads_every_configured_source_and_user(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    comfy_tree.workflow("mine.json", {"nodes": []})
    alice = comfy_tree.root / "user" / "alice" / "workflows"
    alice.mkdir(parents=True)
    (alice / "hers.json").write_text("{}")
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    (downloads / "civitai.json").write_text("{}")
    (downloads / "readme.txt").write_text("not a workflow")
    ctx = _ctx(comfy_tree, home, user_toml=f'[intake.sources.downloads]\npaths = ["{downloads}"]\n')
    intake.run(ctx)
    document = artifacts.read(home / "state" / "intake.json", "intake")
    found = {(w["source"], w["workflow"]) for w in document["workflows"]}
    assert found == {
        ("comfyui", "default/workflows/mine.json"),
        ("comfyui", "alice/workflows/hers.json"),
        ("downloads", "civitai.json"),
    }


def test_run_records_removed_workflows(comfy_tree: ComfyTree, home: Path) -> None:
    path = comfy_tree.workflow("gone.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    path.unlink()
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.counts["removed"] == 1
    assert artifacts.read(home / "state" / "intake.json", "intake")["removed"] == [str(path)]


def test_an_unreadable_workflow_file_is_a_finding_not_a_failed_stage(comfy_tree: ComfyTree, home: Path) -> None:
    known = comfy_tree.workflow("known.json", {"nodes": []})
    comfy_tree.workflow("fine.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    # Dangling symlinks cannot be read by anyone, root included: one seen before, one never seen.
    known.unlink()
    known.symlink_to(comfy_tree.workflows / "nowhere.json")
    stray = comfy_tree.workflows / "stray.json"
    stray.symlink_to(comfy_tree.workflows / "nowhere-else.json")
    comfy_tree.workflow("new.json", {"nodes": []})

    outcome = intake.run(_ctx(comfy_tree, home, T0 + timedelta(hours=2)))

    assert outcome.ok and outcome.errors == []
    assert sorted(outcome.findings) == sorted(
        f"{path}: unreadable: No such file or directory" for path in (known, stray)
    )
    assert outcome.counts == {"workflows": 2, "new": 1, "changed": 0, "removed": 0, "unreadable": 2}
    assert outcome.detail.endswith("; 2 unreadable (1 seen before, kept as they were)")
    document = _document(home)
    assert [w["path"] for w in document["kept"]] == [str(known)]  # seen before: its last version is kept
    assert document["removed"] == [] and sorted(document["errors"]) == sorted(outcome.findings)
    assert [Path(r["path"]).name for r in _log(home)][-1:] == ["new.json"]  # the others acknowledged as usual


def _document(home: Path) -> dict:
    return artifacts.read(home / "state" / "intake.json", "intake")


def test_a_workflows_folder_that_vanished_is_unavailable_not_removed(comfy_tree: ComfyTree, home: Path) -> None:
    comfy_tree.workflow("a.json", {"nodes": []})
    comfy_tree.workflow("sub/b.json", {"nodes": []})
    intake.run(_ctx(comfy_tree, home))
    away = comfy_tree.root.parent / "unplugged"
    comfy_tree.workflows.rename(away)  # the drive holding it is gone

    for hours in (2, 4):  # and stays gone for two cycles: still kept, never removed
        outcome = intake.run(_ctx(comfy_tree, home, T0 + timedelta(hours=hours)))
        assert not outcome.ok
        assert outcome.counts == {"workflows": 0, "new": 0, "changed": 0, "removed": 0, "unavailable": 1, "kept": 2}
        assert outcome.errors == [
            f"{comfy_tree.workflows}: workflows folder unavailable this cycle: gone (a drive that is not mounted, "
            "or a folder moved?); its 2 known workflows are kept as before (none marked removed) and the last "
            "report stays, marked stale"
        ]
        document = _document(home)
        assert document["removed"] == [] and document["workflows"] == []
        assert {Path(w["path"]).name for w in document["kept"]} == {"a.json", "b.json"}
        assert document["unavailable"] == [
            {"source": "comfyui", "folder": str(comfy_tree.workflows), "reason": availability.GONE, "workflows": 2}
        ]

    away.rename(comfy_tree.workflows)
    outcome = intake.run(_ctx(comfy_tree, home, T0 + timedelta(hours=6)))
    assert outcome.ok and outcome.counts == {"workflows": 2, "new": 0, "changed": 0, "removed": 0}
    assert len(_log(home)) == 2  # nothing acknowledged again
    assert {w["first_seen_at"] for w in _document(home)["workflows"]} == {T0.isoformat()}


def test_a_deleted_users_folder_is_removed_while_the_glob_still_matches_others(
    comfy_tree: ComfyTree, home: Path
) -> None:
    comfy_tree.workflow("mine.json", {"nodes": []})
    alice = comfy_tree.root / "user" / "alice" / "workflows"
    alice.mkdir(parents=True)
    (alice / "hers.json").write_text("{}")
    intake.run(_ctx(comfy_tree, home))
    (alice / "hers.json").unlink()
    alice.rmdir()
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.ok and outcome.counts["removed"] == 1
    assert _document(home)["removed"] == [str(alice / "hers.json")] and _document(home)["unavailable"] == []


def test_a_literal_source_path_that_is_gone_is_unavailable(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    usb = tmp_path / "usb" / "workflows"
    usb.mkdir(parents=True)
    (usb / "from-usb.json").write_text("{}")
    comfy_tree.workflow("mine.json", {"nodes": []})
    toml = f'[intake.sources.usb]\npaths = ["{usb}"]\n'
    intake.run(_ctx(comfy_tree, home, user_toml=toml))
    (usb / "from-usb.json").rename(tmp_path / "from-usb.json")
    usb.rmdir()
    outcome = intake.run(_ctx(comfy_tree, home, user_toml=toml))
    assert outcome.counts["removed"] == 0 and outcome.counts["kept"] == 1 and outcome.counts["workflows"] == 1
    assert _document(home)["unavailable"][0]["source"] == "usb"


def test_a_source_dropped_from_the_config_removes_its_workflows(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path
) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    (usb / "from-usb.json").write_text("{}")
    intake.run(_ctx(comfy_tree, home, user_toml=f'[intake.sources.usb]\npaths = ["{usb}"]\n'))
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.ok and outcome.counts["removed"] == 1


def test_an_empty_folder_that_vanished_is_no_error(comfy_tree: ComfyTree, home: Path) -> None:
    intake.run(_ctx(comfy_tree, home))
    comfy_tree.workflows.rmdir()
    outcome = intake.run(_ctx(comfy_tree, home))
    assert outcome.ok and _document(home)["unavailable"] == []


def test_hashes_by_threads_come_back_in_order_with_errors_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = []
    for index in range(23):  # not a multiple of the threads: shares of unequal length
        path = tmp_path / f"w{index}.json"
        path.write_bytes(b"x" * (index * 1000))
        paths.append(str(path))
    paths[7] = str(tmp_path / "vanished.json")
    monkeypatch.setattr(intake, "MIN_PARALLEL_HASHES", 2)
    monkeypatch.setattr(intake.os, "cpu_count", lambda: 4)
    digests = intake._digests(paths)
    assert len(digests) == len(paths)
    assert isinstance(digests[7], FileNotFoundError)
    expected = [intake.sha256_file(p) for i, p in enumerate(paths) if i != 7]
    assert [d for i, d in enumerate(digests) if i != 7] == expected
