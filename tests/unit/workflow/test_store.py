"""The requirement store: a cache by content hash that is safe to lose, tear or edit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comfywatchman.workflow import store as store_module
from comfywatchman.workflow.store import RequirementStore

A, B, C = "a" * 64, "b" * 64, "c" * 64
SETTINGS = "1" * 64
REQ = {"format": "ui", "container": "json", "models": [{"name": "é.safetensors"}], "nodes": []}


def saved(path: Path, shas: dict[str, dict[str, Any]], live: set[str] | None = None) -> RequirementStore:
    store = RequirementStore(path, SETTINGS)
    store.load()
    for sha, requirements in shas.items():
        store.add(sha, RequirementStore.encode(requirements))
    store.save(set(shas) if live is None else live)
    return store


def test_round_trip_and_other_settings_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ})
    assert RequirementStore(path, SETTINGS).get(A) == REQ
    assert RequirementStore(path, SETTINGS).get(B) is None
    assert RequirementStore(path, "2" * 64).get(A) is None
    assert RequirementStore(tmp_path / "none.pack", SETTINGS).get(A) is None


def test_a_torn_or_edited_line_is_ignored_and_does_not_spoil_the_next(tmp_path: Path) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ, B: REQ})
    text = path.read_bytes()
    path.write_bytes(text.replace(b'"ui"', b'"xx"', 1)[:-10])  # A edited, B torn (no newline)
    store = RequirementStore(path, SETTINGS)
    assert store.get(A) is None and store.get(B) is None
    store.add(C, RequirementStore.encode(REQ))
    store.save({A, B, C})
    assert RequirementStore(path, SETTINGS).get(C) == REQ


def test_new_lines_are_appended_and_stale_ones_dropped_when_they_pile_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ, B: REQ})
    saved(path, {C: REQ}, live={A, B, C})
    assert path.read_bytes().count(b"\n") == 3  # appended
    monkeypatch.setattr(store_module, "MIN_STALE", 0)
    saved(path, {}, live={C})  # A and B are no longer listed: 2 stale lines of 3
    assert path.read_bytes().count(b"\n") == 1
    store = RequirementStore(path, SETTINGS)
    assert store.get(C) == REQ and store.get(A) is None


def test_added_lines_wait_on_disk_and_a_first_save_puts_them_in_place(tmp_path: Path) -> None:
    path = tmp_path / "requirements.pack"
    store = RequirementStore(path, SETTINGS)
    store.load()
    store.add(A, RequirementStore.encode(REQ))
    store.add(B, RequirementStore.encode({**REQ, "format": "api"}))
    assert store.get(A) == REQ and store.get(B) == {**REQ, "format": "api"}  # readable before the save
    [temp] = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the payloads are there, not in memory
    assert temp.read_bytes().count(b"\n") == 2
    store.add(C, RequirementStore.encode({**REQ, "container": "png"}))  # written after the lines read back
    assert store.get(C) == {**REQ, "container": "png"} and store.get(A) == REQ
    store.save({A, B, C})
    assert [p.name for p in tmp_path.iterdir()] == ["requirements.pack"]
    again = RequirementStore(path, SETTINGS)
    assert again.get(A) == REQ and again.get(B) == {**REQ, "format": "api"}
    assert again.get(C) == {**REQ, "container": "png"}


def test_lines_added_and_not_saved_leave_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ})
    store = RequirementStore(path, SETTINGS)
    store.add(B, RequirementStore.encode(REQ))
    store.close()  # the scan failed before saving
    assert [p.name for p in tmp_path.iterdir()] == ["requirements.pack"]
    assert RequirementStore(path, SETTINGS).get(B) is None and RequirementStore(path, SETTINGS).get(A) == REQ


def test_a_rewrite_keeps_the_latest_line_of_each_live_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ, B: REQ})
    monkeypatch.setattr(store_module, "MIN_STALE", 0)
    store = RequirementStore(path, SETTINGS)
    store.load()
    store.add(A, RequirementStore.encode({**REQ, "format": "api"}))  # supersedes the line in the file
    store.add(A, RequirementStore.encode({**REQ, "container": "png"}))  # and this the one just added
    store.save({A})
    assert path.read_bytes().count(b"\n") == 1
    assert RequirementStore(path, SETTINGS).get(A) == {**REQ, "container": "png"}


def test_payloads_orjson_refuses_are_written_by_the_standard_library(tmp_path: Path) -> None:
    odd = {**REQ, "nodes": [{"class_type": "X", "node_ids": [str(2**70)], "modes": [], "big": 2**70}]}
    payload = RequirementStore.encode(odd)
    path = tmp_path / "requirements.pack"
    store = RequirementStore(path, SETTINGS)
    store.add(A, payload)
    store.save({A})
    assert RequirementStore(path, SETTINGS).get(A) == odd


def _indexed_line_by_line(data: bytes, settings: bytes) -> tuple[dict[str, tuple[int, int, int]], int, bool]:
    """The index, line count and torn tail of ``data`` worked out one line at a time (the reference)."""
    index, count, offset, torn = {}, 0, 0, False
    after = 65 + len(settings)
    for line in data.splitlines(keepends=True):
        body = len(line) - 1 if line.endswith(b"\n") else len(line)
        torn = torn or body == len(line)
        if body > 0:
            count += 1
            if line[64:65] == b" " and line.startswith(settings, 65) and line[after : after + 1] == b" ":
                index[line[:64].decode("ascii", "replace")] = (0, offset, body)
        offset += len(line)
    return index, count, torn


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
@pytest.mark.parametrize("torn_tail", [False, True])
def test_lines_are_indexed_alike_whatever_the_chunk_they_are_read_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, torn_tail: bool
) -> None:
    path = tmp_path / "requirements.pack"
    saved(path, {A: REQ, B: {**REQ, "nodes": [{"class_type": "x" * 300}]}})
    other = f"{C} {'2' * 64} {'d' * 64} {{}}\n".encode()
    short = f"{C} {SETTINGS}\n{C[:30]}\n\n\n".encode()  # a line cut before its payload, a stub, empty lines
    tail = f"{C} {SETTINGS} {'e' * 64} {{".encode() if torn_tail else b""
    path.write_bytes(path.read_bytes() + other + short + tail)
    monkeypatch.setattr(store_module, "_COPY_CHUNK", chunk)
    store = RequirementStore(path, SETTINGS)
    store.load()
    index, count, torn = _indexed_line_by_line(path.read_bytes(), SETTINGS.encode())
    assert (store._index, store._line_count, store._torn_tail) == (index, count, torn)
    assert (C in store._index) is torn_tail
    assert store.get(A) == REQ
