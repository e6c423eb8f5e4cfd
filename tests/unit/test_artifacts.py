"""Artifacts: validated reads, atomic writes, no rewrite when unchanged, whole JSON-lines files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

ENTRY = {
    "ts": "2026-01-01T00:00:00+00:00",
    "source": "comfyui",
    "path": "/w.json",
    "sha256": "a" * 64,
    "kind": "new",
}


def test_read_names_the_file_when_missing(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"scan.json: missing \(run the stage that writes it first\)"):
        artifacts.read(tmp_path / "scan.json", "scan")


def test_read_names_the_file_when_torn(tmp_path: Path) -> None:
    path = tmp_path / "gate.json"
    path.write_text('{"cycle_id": "x", "verd')
    with pytest.raises(ArtifactError) as caught:
        artifacts.read(path, "gate")
    assert str(caught.value).startswith(f"{path}: not valid JSON")
    assert "\n" not in str(caught.value)


def test_read_names_the_file_when_it_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    path.write_bytes(b'{"results": \x8d\xff]')
    with pytest.raises(ArtifactError, match=r"search.json: not valid JSON \(not UTF-8 text at byte 12\)"):
        artifacts.read(path, "search")


def test_read_names_file_and_key_when_schema_fails(tmp_path: Path) -> None:
    path = tmp_path / "entry.json"
    path.write_text(json.dumps({**ENTRY, "kind": "deleted"}))
    with pytest.raises(ArtifactError, match=r"entry.json: at 'kind': 'deleted' is not one of"):
        artifacts.read(path, "intake_log_entry")


def test_write_refuses_invalid_data_and_leaves_old_file(tmp_path: Path) -> None:
    path = tmp_path / "entry.json"
    artifacts.write(path, ENTRY, "intake_log_entry")
    with pytest.raises(ArtifactError, match="about to be written"):
        artifacts.write(path, {**ENTRY, "sha256": "nothex"}, "intake_log_entry")
    assert json.loads(path.read_text()) == ENTRY
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]  # no temp file left behind


def test_write_if_changed_keeps_file_and_mtime_when_only_volatile_keys_differ(tmp_path: Path) -> None:
    path = tmp_path / "nodes.json"
    doc = {"comfyui_root": "/c", "generated_at": "2026-01-01T00:00:00+00:00", "packs": []}
    assert artifacts.write_if_changed(path, doc, "custom_nodes_cache", volatile=["generated_at"])
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    later = {**doc, "generated_at": "2026-02-01T00:00:00+00:00"}
    assert not artifacts.write_if_changed(path, later, "custom_nodes_cache", volatile=["generated_at"])
    assert path.stat().st_mtime_ns == 1_000_000_000
    changed = {**later, "comfyui_root": "/d"}
    assert artifacts.write_if_changed(path, changed, "custom_nodes_cache", volatile=["generated_at"])
    assert json.loads(path.read_text())["comfyui_root"] == "/d"


@pytest.mark.parametrize("indent", [None, 2])
def test_write_if_changed_tells_a_new_timestamp_from_new_content_without_parsing_the_file(
    tmp_path: Path, indent: int | None
) -> None:
    path = tmp_path / "nodes.json"
    doc = {"comfyui_root": "/c", "generated_at": "2026-01-01T00:00:00+00:00", "packs": []}
    assert artifacts.write_if_changed(path, doc, "custom_nodes_cache", volatile=["generated_at"], indent=indent)
    written = path.read_bytes()
    later = {**doc, "generated_at": "2026-02-01T00:00:00+00:00"}
    # Unchanged but for the timestamp: told from the text alone, the file kept as it is.
    assert artifacts._same_but_volatile(written, later, ["generated_at"], indent)
    assert not artifacts.write_if_changed(path, later, "custom_nodes_cache", volatile=["generated_at"], indent=indent)
    assert path.read_bytes() == written
    # What the text comparison must not take for the same content.
    key = b'"generated_at":' if indent is None else b'"generated_at": '
    after = written.index(key) + len(key)
    escaped = (
        written[:after] + b'"2026-01-01T00:00:00\\u002b00:00"' + written[after + 27 :]
    )  # the same, spelled otherwise
    extra = written.replace(b'"/c"', b'"/c","zz":1') if indent is None else written.replace(b'"/c",', b'"/c", "zz": 1,')
    for other in (escaped, extra, written + b" ", written[:-1], b"{}\n", b""):
        assert not artifacts._same_but_volatile(other, later, ["generated_at"], indent)
    # Without volatile keys in the data, only the very same text is the same.
    plain = {k: v for k, v in doc.items() if k != "generated_at"}
    assert not artifacts._same_but_volatile(written, plain, ["generated_at"], indent)
    # A timestamp spelled otherwise is rewritten, as the parsed comparison always did.
    path.write_bytes(escaped)
    assert artifacts.write_if_changed(path, later, "custom_nodes_cache", volatile=["generated_at"], indent=indent)
    assert json.loads(path.read_text())["generated_at"] == later["generated_at"]


def test_append_jsonl_cuts_a_torn_last_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    artifacts.append_jsonl(path, [ENTRY], "intake_log_entry")
    with open(path, "a") as handle:
        handle.write('{"ts": "2026-01-0')  # a write killed halfway
    artifacts.append_jsonl(path, [{**ENTRY, "path": "/x.json"}], "intake_log_entry")
    records = list(artifacts.read_jsonl(path, "intake_log_entry"))
    assert [r["path"] for r in records] == ["/w.json", "/x.json"]
    assert path.read_text().endswith("\n")


def test_read_jsonl_skips_bad_lines_and_reads_from_offset(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(ENTRY) + "\nnot json\n" + json.dumps({**ENTRY, "kind": "??"}) + "\n")
    size = path.stat().st_size
    with open(path, "a") as handle:
        handle.write(json.dumps({**ENTRY, "path": "/late.json"}) + "\n")
    assert [r["path"] for r in artifacts.read_jsonl(path, "intake_log_entry")] == ["/w.json", "/late.json"]
    assert "line 2 is not valid JSON" in caplog.text
    assert [r["path"] for r in artifacts.read_jsonl(path, "intake_log_entry", offset=size)] == ["/late.json"]
    assert list(artifacts.read_jsonl(tmp_path / "absent.jsonl", "intake_log_entry")) == []


def test_schemas_resolve_references_to_each_other() -> None:
    # master_status refers to intake_log_entry by file name.
    errors = artifacts.schema_errors({"recent_intake": [{"ts": 1}]}, "master_status", "x")
    assert any("recent_intake[0]" in e for e in errors)


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[2].joinpath("schemas").glob("*.schema.json")))
def test_every_schema_property_has_a_description_and_objects_are_closed(path: Path) -> None:
    schema = json.loads(path.read_text())

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, f"{path.name}: {where} allows unknown keys"
                for name, prop in node["properties"].items():
                    assert isinstance(prop, dict) and ("description" in prop or "$ref" in prop), (
                        f"{path.name}: {where}.{name}"
                    )
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}[{index}]")

    walk(schema, "$")


def test_write_assembled_writes_what_dumps_would_and_validates_the_head(tmp_path: Path) -> None:
    from tests.unit.test_validation import SCAN

    entry = SCAN["workflows"][0]
    parts = [artifacts.part_text(entry, "scan", "workflow", "e"), artifacts.part_text(entry, "scan", "workflow", "e")]
    head = {**SCAN, "workflows": []}
    digest = artifacts.write_assembled(tmp_path / "scan.json", head, "workflows", parts, "scan")
    text = (tmp_path / "scan.json").read_text(encoding="utf-8")
    assert json.loads(text) == {**SCAN, "workflows": [entry, entry]}
    assert text.replace("\n", "") + "\n" == artifacts.dumps({**SCAN, "workflows": [entry, entry]}, indent=None)
    assert text.splitlines()[1:3] == [parts[0] + ",", parts[1]]  # one item per line
    assert digest == hashlib.sha256(text.encode("utf-8")).hexdigest()
    with pytest.raises(ArtifactError, match=r"scan.json \(about to be written\): at 'demo'"):
        artifacts.write_assembled(tmp_path / "scan.json", {**head, "demo": "no"}, "workflows", parts, "scan")
    with pytest.raises(ArtifactError, match=r"e: at 'reused'"):
        artifacts.part_text({**entry, "reused": "no"}, "scan", "workflow", "e")


def _written_scan(tmp_path: Path, count: int) -> tuple[Path, list[dict[str, Any]]]:
    from tests.unit.test_validation import SCAN

    entries = [{**SCAN["workflows"][0], "workflow": f"w{n}.json"} for n in range(count)]
    parts = [artifacts.part_text(e, "scan", "workflow", "e") for e in entries]
    path = tmp_path / "scan.json"
    artifacts.write_assembled(path, {**SCAN, "workflows": []}, "workflows", parts, "scan")
    return path, entries


def test_assembled_gives_the_head_and_each_item_of_a_written_artifact(tmp_path: Path) -> None:
    path, entries = _written_scan(tmp_path, 3)
    read = artifacts.Assembled(path, "workflows", "scan", "workflow")
    assert read.head == {**json.loads(path.read_text(encoding="utf-8")), "workflows": []}
    assert list(read.items()) == entries
    assert list(read.items()) == entries  # items() may be walked again


def test_assembled_reads_another_layout_whole(tmp_path: Path) -> None:
    path, entries = _written_scan(tmp_path, 2)
    document = json.loads(path.read_text(encoding="utf-8"))
    for text in (json.dumps(document, indent=2), json.dumps(document)):  # edited by hand, an older writer
        path.write_text(text, encoding="utf-8")
        read = artifacts.Assembled(path, "workflows", "scan", "workflow")
        assert read.head == {**document, "workflows": []}
        assert list(read.items()) == entries
    (tmp_path / "none").mkdir()
    empty, _ = _written_scan(tmp_path / "none", 0)  # no items: one line, read whole
    assert list(artifacts.Assembled(empty, "workflows", "scan", "workflow").items()) == []


def test_assembled_names_the_file_and_line_of_broken_content(tmp_path: Path) -> None:
    path, _ = _written_scan(tmp_path, 3)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    path.write_text("".join([*lines[:2], lines[2].replace('"reused":false', '"reused":"no"'), *lines[3:]]))
    with pytest.raises(ArtifactError, match=r"scan.json \(line 3\): at 'reused'"):
        list(artifacts.Assembled(path, "workflows", "scan", "workflow").items())
    path.write_text("".join([*lines[:2], "{not json\n", *lines[3:]]))
    with pytest.raises(ArtifactError, match=r"scan.json: line 3 is not valid JSON"):
        list(artifacts.Assembled(path, "workflows", "scan", "workflow").items())
    path.write_text("".join(lines[:3]))  # cut short: the head cannot be made whole, so it is read whole
    with pytest.raises(ArtifactError, match=r"scan.json: not valid JSON"):
        artifacts.Assembled(path, "workflows", "scan", "workflow")
    with pytest.raises(ArtifactError, match=r"missing"):
        artifacts.Assembled(tmp_path / "absent.json", "workflows", "scan", "workflow")


def test_assembled_writer_writes_what_write_assembled_writes_and_nothing_when_left_early(tmp_path: Path) -> None:
    from tests.unit.test_validation import SCAN

    entries = [{**SCAN["workflows"][0], "workflow": f"w{n}.json"} for n in range(3)]
    parts = [artifacts.part_text(e, "scan", "workflow", "e") for e in entries]
    head = {**SCAN, "workflows": []}
    expected = artifacts.write_assembled(tmp_path / "a.json", head, "workflows", parts, "scan")
    for count in (3, 0):
        with artifacts.AssembledWriter(tmp_path / "b.json", "workflows") as writer:
            for part in parts[:count]:
                writer.add(part.encode("utf-8"))
            digest = writer.finish(head, "scan")
        text = (tmp_path / "b.json").read_bytes()
        assert digest == hashlib.sha256(text).hexdigest()
        assert json.loads(text) == {**SCAN, "workflows": entries[:count]}
    assert expected == hashlib.sha256((tmp_path / "a.json").read_bytes()).hexdigest()
    with artifacts.AssembledWriter(tmp_path / "b.json", "workflows") as writer:
        for part in parts:
            writer.add(part.encode("utf-8"))
        assert writer.finish(head, "scan") == expected  # the very bytes write_assembled wrote
    before = (tmp_path / "b.json").read_bytes()
    with pytest.raises(RuntimeError), artifacts.AssembledWriter(tmp_path / "b.json", "workflows") as writer:
        writer.add(parts[0].encode("utf-8"))
        raise RuntimeError("killed midway")
    with pytest.raises(ArtifactError), artifacts.AssembledWriter(tmp_path / "b.json", "workflows") as writer:
        writer.add(parts[0].encode("utf-8"))
        writer.finish({**head, "demo": "no"}, "scan")
    assert (tmp_path / "b.json").read_bytes() == before  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp file left


def test_head_first_writer_writes_what_write_assembled_writes_and_nothing_when_left_early(tmp_path: Path) -> None:
    from tests.unit.test_validation import SCAN

    entries = [{**SCAN["workflows"][0], "workflow": f"w{n}.json"} for n in range(4)]
    parts = [artifacts.part_text(e, "scan", "workflow", "e").encode("utf-8") for e in entries]
    head = {**SCAN, "workflows": []}
    for count in (4, 1, 0):
        expected = artifacts.write_assembled(
            tmp_path / "a.json", head, "workflows", [p.decode() for p in parts[:count]], "scan"
        )
        with artifacts.HeadFirstWriter(tmp_path / "b.json", "workflows", head, "scan") as writer:
            if count == 4:  # one alone, a run of two joined as in the file, one alone
                writer.add(parts[0])
                writer.add_many(memoryview(b",\n".join(parts[1:3])), 2)
                writer.add(parts[3])
            elif count:
                writer.add_many(b",\n".join(parts[:count]), count)
            digest = writer.finish()
        assert (tmp_path / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()  # byte for byte
        assert digest == expected
    before = (tmp_path / "b.json").read_bytes()
    with pytest.raises(RuntimeError), artifacts.HeadFirstWriter(tmp_path / "b.json", "workflows", head, "scan") as w:
        w.add(parts[0])
        raise RuntimeError("killed midway")
    with pytest.raises(ArtifactError):
        artifacts.HeadFirstWriter(tmp_path / "b.json", "workflows", {**head, "demo": "no"}, "scan")
    assert (tmp_path / "b.json").read_bytes() == before  # the old file stays whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]  # no temp file left


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_temp_files_carry_the_writers_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: Path) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", spy)
    artifacts.atomic_write_text(tmp_path / "scan.json", "{}\n")
    artifacts.append_jsonl(tmp_path / "intake_log.jsonl", [ENTRY], "intake_log_entry")
    pid = str(os.getpid())
    assert [n.split(".")[:4] for n in seen] == [["", "scan", "json", pid], ["", "intake_log", "jsonl", pid]]
    assert all(n.endswith(".tmp") for n in seen)


def test_a_temp_file_beside_is_new_private_and_named_for_its_writer(tmp_path: Path) -> None:
    target = tmp_path / "scan.json"
    made = [artifacts.temp_beside(target) for _ in range(50)]
    try:
        names = [Path(name) for _fd, name in made]
        assert len(set(names)) == 50 and all(n.parent == tmp_path for n in names)
        assert all(n.name.startswith(artifacts.temp_prefix(target)) and n.name.endswith(".tmp") for n in names)
        if os.name == "posix":
            assert {n.stat().st_mode & 0o777 for n in names} == {0o600}
        fd, name = made[0]
        os.write(fd, b"abc")
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 3) == b"abc" and Path(name).read_bytes() == b"abc"
    finally:
        for fd, _name in made:
            os.close(fd)


def test_remove_stale_temp_files_keeps_only_what_a_live_writer_owns(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    live = _sleeper()
    try:
        names = {
            f".scan.json.{dead_pid}.k2j3h4_x.tmp": False,  # a killed writer's
            ".scan.json.k2j3h4_x.tmp": False,  # an older version's, without a pid
            f".requirements.pack.{dead_pid}.tmp": False,  # the requirement store's rewrite
            f".intake_log.jsonl.{os.getpid()}.abc.tmp": False,  # this process's own: no write under way
            f".scheduler.json.{live.pid}.q1w2e3r4.tmp": True,  # the --scheduler loop's, being written now
            ".notes.json.123.abc.tmp": True,  # not the temp file of an artifact named here
            "scan.json": True,
            ".scan.json": True,
        }
        for name in names:
            (tmp_path / name).write_text("{")
        removed = artifacts.remove_stale_temp_files(
            tmp_path, ["scan.json", "requirements.pack", "intake_log.jsonl", "scheduler.json"]
        )
        assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kept in names.items() if kept)
    finally:
        live.kill()
        live.wait()
    assert artifacts.remove_stale_temp_files(tmp_path / "missing", ["scan.json"]) == []


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_an_append_cut_short_leaves_only_whole_lines(tmp_path: Path) -> None:
    # A write that stops partway (as a SIGKILL between two pages of one write() stops it, or a full disk)
    # must leave the log as it was: the file size limit of a child process makes one stop at a known byte.
    log = tmp_path / "intake_log.jsonl"
    artifacts.append_jsonl(log, [ENTRY], "intake_log_entry")
    before = log.read_bytes()
    code = (
        "import resource, signal, sys\n"
        "from pathlib import Path\n"
        "from comfywatchman import artifacts\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({len(before) + 700}, resource.RLIM_INFINITY))\n"
        f"entry = {ENTRY!r}\n"
        "records = [dict(entry, path=f'/w{i}.json') for i in range(40)]\n"
        "try:\n"
        "    artifacts.append_jsonl(Path(sys.argv[1]), records, 'intake_log_entry')\n"
        "except OSError as exc:\n"
        "    print('refused:', exc.errno)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(log)], capture_output=True, text=True, check=True)
    assert done.stdout.startswith("refused:")
    assert log.read_bytes() == before
    # The next append goes on from whole lines, and the cut-short temp file is the next cycle's to remove.
    artifacts.append_jsonl(log, [dict(ENTRY, path="/next.json")], "intake_log_entry")
    assert [r["path"] for r in artifacts.read_jsonl(log, "intake_log_entry")] == ["/w.json", "/next.json"]


def test_appenders_at_once_lose_no_line(tmp_path: Path) -> None:
    log = tmp_path / "cycles.jsonl"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from comfywatchman import artifacts\n"
        f"entry = {ENTRY!r}\n"
        "for i in range(30):\n"
        "    artifacts.append_jsonl(Path(sys.argv[1]), [dict(entry, path=f'/{sys.argv[2]}/{i}')], 'intake_log_entry')\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(log), str(n)]) for n in range(3)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0]
    paths = [r["path"] for r in artifacts.read_jsonl(log, "intake_log_entry")]
    assert sorted(paths) == sorted(f"/{n}/{i}" for n in range(3) for i in range(30))


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
def test_an_append_keeps_the_files_mode(tmp_path: Path) -> None:
    log = tmp_path / "intake_log.jsonl"
    log.write_text("")
    log.chmod(0o644)
    artifacts.append_jsonl(log, [ENTRY], "intake_log_entry")
    assert log.stat().st_mode & 0o777 == 0o644


def test_read_top_level_parses_only_the_keys_asked_for_and_gives_up_on_another_layout(tmp_path: Path) -> None:
    document = {
        "big": [{"name": 'a "quoted"\n  "summary": 1', "nested": {"summary": 2}}] * 3,
        "summary": {"ready": 1, "workflows": 2},
        "stale": None,
        "zlast": "x",
    }
    path = tmp_path / "doc.json"
    path.write_text(artifacts.dumps(document), encoding="utf-8")
    assert artifacts.read_top_level(path, ["summary", "stale", "zlast"]) == {
        "summary": {"ready": 1, "workflows": 2},
        "stale": None,
        "zlast": "x",
    }
    assert artifacts.read_top_level(path, ["summary", "absent"]) is None
    path.write_text(artifacts.dumps(document, indent=None), encoding="utf-8")
    assert artifacts.read_top_level(path, ["summary"]) is None
    assert artifacts.read_top_level(tmp_path / "missing.json", ["summary"]) is None
    path.write_bytes(b"")
    assert artifacts.read_top_level(path, ["summary"]) is None
    # Cut before its closing brace: not the layout, so the caller reads it whole (and says what is wrong).
    path.write_text(artifacts.dumps(document).rsplit("\n}", 1)[0], encoding="utf-8")
    assert artifacts.read_top_level(path, ["zlast"]) is None
    assert artifacts.read_top_level(path, ["summary"]) == {"summary": {"ready": 1, "workflows": 2}}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_deferred_syncs_flush_each_folder_and_appended_file_once_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    runs = tmp_path / "state" / "runs"
    with artifacts.deferred_syncs():
        for name in ("a", "b", "c"):
            artifacts.atomic_write_bytes(runs / f"{name}.json", b"{}\n")
        artifacts.atomic_write_bytes(tmp_path / "state" / "d.json", b"{}\n")
        log = tmp_path / "structured.log"
        for _ in range(3):
            with open(log, "a", encoding="utf-8") as handle:
                handle.write("line\n")
                handle.flush()
                artifacts.fsync_appended(log, handle.fileno())
        during = list(synced)
    # Each file's content is flushed before its rename, as always; the folders and the log wait for the end.
    assert len(during) == 4 and all(p.endswith(".tmp") for p in during)
    # Flushed together (each in a thread of its own), so in no particular order.
    assert sorted(synced[4:]) == sorted([str(log), str(runs), str(tmp_path / "state")])
    assert all((runs / f"{n}.json").read_bytes() == b"{}\n" for n in "abc")

    synced.clear()
    artifacts.atomic_write_bytes(runs / "a.json", b"[]\n")  # outside a block: the folder at once
    assert synced[-1] == str(runs)


def test_flushed_together_each_once_and_a_failure_is_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The paths left for the end of deferred_syncs are flushed at once, each once, before it returns; one that
    cannot be flushed is an error line naming it, and the others are still flushed."""
    flushed: list[str] = []
    threads: set[int] = set()
    started = threading.Barrier(3, timeout=5)  # all three wait here together: they do run at once

    def fsync_path(path: str) -> None:
        started.wait()
        threads.add(threading.get_ident())
        if path.endswith("gone"):
            raise FileNotFoundError(2, "No such file or directory")
        flushed.append(path)

    monkeypatch.setattr(artifacts, "_fsync_path", fsync_path)
    with caplog.at_level(logging.ERROR):
        artifacts._flush_all([str(tmp_path / "a"), str(tmp_path / "gone"), str(tmp_path / "b")])
    assert sorted(flushed) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert len(threads) == 3
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'gone'}: cannot flush to disk: No such file or directory"
    ]
    artifacts._flush_all([])  # nothing to flush: no thread, no error


def test_an_unflushed_replace_puts_the_whole_new_file_in_place_and_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "memo.bin"
    renamed_over: list[Path] = []
    real_replace = os.replace
    monkeypatch.setattr(
        artifacts.os, "replace", lambda src, dst: renamed_over.append(Path(dst)) or real_replace(src, dst)
    )
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(artifacts.os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    monkeypatch.setattr(artifacts, "EXCHANGE_MIN_BYTES", 8)
    artifacts.atomic_write_bytes(path, b"first", durable=False)  # no file there yet: a plain rename
    artifacts.atomic_write_bytes(path, b"small", durable=False)  # below EXCHANGE_MIN_BYTES: a plain rename
    artifacts.atomic_write_bytes(path, b"second ", bytearray(b"one"), durable=False)
    assert path.read_bytes() == b"second one"
    assert [p.name for p in tmp_path.iterdir()] == ["memo.bin"]
    assert synced == []  # neither the file nor its folder
    if sys.platform.startswith("linux") and artifacts._exchange_call() is not None:
        assert renamed_over == [path, path]  # the last one swapped the names: no rename over a file
    artifacts.write(tmp_path / "entry.json", ENTRY, "intake_log_entry", durable=False)
    assert synced == [] and artifacts.read(tmp_path / "entry.json", "intake_log_entry") == ENTRY
    artifacts.write(tmp_path / "entry.json", ENTRY, "intake_log_entry")  # durable: the file and its folder
    assert len(synced) == 2


def test_an_unflushed_replace_without_renameat2_or_refused_renames_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "memo.bin"
    path.write_bytes(b"old")
    monkeypatch.setattr(artifacts, "_renameat2_looked_up", True)
    for call in (None, lambda *_: -1):  # no such call; a file system that refuses the exchange
        monkeypatch.setattr(artifacts, "_renameat2", call)
        tmp = tmp_path / ".memo.bin.1.x.tmp"
        tmp.write_bytes(b"new" if call is None else b"newer")
        artifacts.replace_unflushed(str(tmp), path)
        assert path.read_bytes() == (b"new" if call is None else b"newer")
        assert [p.name for p in tmp_path.iterdir()] == ["memo.bin"]


def test_a_settling_write_is_in_place_only_once_settled_and_a_failed_fsync_leaves_the_last_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "search.json"
    path.write_bytes(b"old\n")
    settling = artifacts.Settling(path, b"new", bytearray(b" file\n"))
    assert path.read_bytes() == b"old\n"  # the stage goes on; readers still find the last file, whole
    settling.settle()
    assert path.read_bytes() == b"new file\n"
    artifacts.Settling(path, b"dropped\n").abandon()
    assert path.read_bytes() == b"new file\n"

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(artifacts.os, "fsync", fail)
    with pytest.raises(OSError, match="Input/output"):
        artifacts.Settling(path, b"lost\n").settle()
    assert path.read_bytes() == b"new file\n"
    assert [p.name for p in tmp_path.iterdir()] == ["search.json"]  # no temp file left behind


def test_a_write_that_fails_names_the_file_and_leaves_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "intake.json"
    path.write_bytes(b"old")
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, chunk: bytes) -> int:
            raise OSError(28, "No space left on device")  # as write(2) says it: no file named

    monkeypatch.setattr(artifacts.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError, match="No space left on device") as caught:
        artifacts.atomic_write_bytes(path, b"new")
    assert caught.value.errno == 28 and caught.value.filename == str(path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["intake.json"]


AWAKE = {
    "boot_id": "b",
    "awake_s": 5.0,
    "suspended_s": 0.0,
    "observed_at": "2026-01-01T00:00:00+00:00",
    "resumed_at_awake_s": 0,
    "platform": "linux",
}


def test_a_handed_over_document_is_taken_once_and_only_while_the_file_is_the_one_written(tmp_path: Path) -> None:
    path = tmp_path / "awake.json"
    document = dict(AWAKE)
    artifacts.write(path, document, "awake", hand_over=True)
    assert artifacts.read(path, "awake", handed_over=True) is document  # no read, parse or check again
    again = artifacts.read(path, "awake", handed_over=True)  # taken once: read from the file
    assert again == document and again is not document
    artifacts.write(path, document, "awake", hand_over=True)
    assert artifacts.read(path, "awake") is not document  # a reader that did not ask for it reads the file
    artifacts.write(path, document, "awake", hand_over=True)
    edited = {**AWAKE, "boot_id": "edited"}
    artifacts.write(path, edited, "awake")  # another writer since: the file is not the one handed over
    assert artifacts.read(path, "awake", handed_over=True) == edited
    artifacts.write(path, document, "awake", hand_over=True)
    path.write_text("{}")  # changed by hand: read, and refused, from the file
    with pytest.raises(ArtifactError, match=r"awake\.json"):
        artifacts.read(path, "awake", handed_over=True)
