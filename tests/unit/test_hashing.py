"""The hash store and the chunked sha256, on real files in tmp_path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from comfywatchman import hashing


def safetensors(path: Path, data: bytes, header_length: int | None = None) -> Path:
    """Write a safetensors-shaped file: 8-byte little-endian header length, a JSON header, then ``data``."""
    header = b'{"__metadata__":{}}'
    length = len(header) if header_length is None else header_length
    path.write_bytes(length.to_bytes(8, "little") + header + data)
    return path


def test_file_sha256_equals_hashlib_over_several_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = os.urandom(hashing.CHUNK * 2 + 12345)  # crosses two chunk boundaries, ends mid-chunk
    path.write_bytes(data)
    assert hashing.file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_file_sha256_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.safetensors"
    path.touch()
    assert hashing.file_sha256(path) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("header_length", "cut", "truncated"),
    [(None, 0, False), (None, 10, True), (10_000, 0, True), (1 << 40, 0, True)],
)
def test_safetensors_truncated_when_the_header_does_not_fit(
    tmp_path: Path, header_length: int | None, cut: int, truncated: bool
) -> None:
    path = safetensors(tmp_path / "m.safetensors", b"", header_length)
    if cut:
        path.write_bytes(path.read_bytes()[:-cut])
    assert hashing.safetensors_truncated(path, path.stat().st_size) is truncated


def test_safetensors_shorter_than_eight_bytes_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"\x01\x02")
    assert hashing.safetensors_truncated(path, 2)


def test_store_keeps_a_hash_by_path_size_and_mtime(tmp_path: Path) -> None:
    model = tmp_path / "a.safetensors"
    model.write_bytes(b"first")
    store = hashing.HashStore(tmp_path / "hashes.json").load()
    stat = hashing.stat_of(model)
    assert stat is not None and store.get(str(model), stat) is None
    store.put(str(model), stat, hashlib.sha256(b"first").hexdigest(), "2026-11-30T00:00:00+00:00")
    store.save()
    again = hashing.HashStore(tmp_path / "hashes.json").load()
    assert again.get(str(model), stat) == hashlib.sha256(b"first").hexdigest()
    os.utime(model, ns=(stat.mtime_ns + 1_000_000_000, stat.mtime_ns + 1_000_000_000))
    replaced = hashing.stat_of(model)
    assert replaced is not None and again.get(str(model), replaced) is None  # same size, new mtime: replaced


def test_store_save_writes_only_when_changed(tmp_path: Path) -> None:
    store = hashing.HashStore(tmp_path / "hashes.json").load()
    store.save()
    assert not (tmp_path / "hashes.json").exists()
    store.put("/x", hashing.Stat(1, 2), "0" * 64, "2026-11-30T00:00:00+00:00")
    store.save()
    mtime = (tmp_path / "hashes.json").stat().st_mtime_ns
    store.forget_except({"/x"})
    store.save()
    assert (tmp_path / "hashes.json").stat().st_mtime_ns == mtime
    store.forget_except(set())
    store.save()
    assert hashing.HashStore(tmp_path / "hashes.json").load().files == {}


def test_store_that_is_not_valid_starts_empty_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "hashes.json").write_text('{"files": {"/x": {"size": "big"}}}', encoding="utf-8")
    store = hashing.HashStore(tmp_path / "hashes.json").load()
    assert store.files == {}
    assert "hashes.json" in caplog.text


@pytest.mark.parametrize("size", [1, 100, hashing.CHUNK - 1, hashing.CHUNK, hashing.CHUNK + 1])
def test_file_sha256_whatever_the_size_against_the_buffer(tmp_path: Path, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hashing.file_sha256(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, hashing.CHUNK + 3])
def test_file_sha256_head_gives_the_hash_and_the_first_bytes(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    assert hashing.file_sha256_head(path) == (hashlib.sha256(data).hexdigest(), data[: hashing.HEAD])


@pytest.mark.parametrize(("length", "extra"), [(None, b"tensors"), (10**6, b""), (2**62, b"x"), (0, b"")])
def test_safetensors_truncated_head_is_what_reading_the_file_says(
    tmp_path: Path, length: int | None, extra: bytes
) -> None:
    path = safetensors(tmp_path / "m.safetensors", extra, length)
    size = path.stat().st_size
    head = hashing.file_sha256_head(path)[1]
    assert hashing.safetensors_truncated_head(head, size) == hashing.safetensors_truncated(path, size)
    assert hashing.safetensors_truncated_head(b"", 5) and hashing.safetensors_truncated(path, 5)
