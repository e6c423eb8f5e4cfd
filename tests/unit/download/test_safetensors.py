"""The safetensors header check, on real file bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from comfywatchman.download.safetensors import broken_files, truncation_reason
from tests.helpers.model_files import safetensors_bytes


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (safetensors_bytes(1000), None),
        (safetensors_bytes(1000)[:-1], "truncated: tensors need"),
        (safetensors_bytes(1000)[:20], "truncated: header needs"),
        (b"\x01\x02", "shorter than the 8-byte"),
        (struct.pack("<Q", 2**40) + b"{}", "implausible"),
        (struct.pack("<Q", 4) + b"nope", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_truncation_reason(tmp_path: Path, content: bytes, words: str | None) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(content)
    reason = truncation_reason(path)
    assert (reason is None) if words is None else (words in (reason or ""))


def test_broken_files_lists_installed_truncated_safetensors_only(tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "good.safetensors").write_bytes(safetensors_bytes(64))
    (folder / "cut.safetensors").write_bytes(safetensors_bytes(64)[:-5])
    (folder / "other.ckpt").write_bytes(b"12")
    names = ("good.safetensors", "cut.safetensors", "other.ckpt", "gone.safetensors")
    files = [{"name": n, "dir": 0, "size": 1} for n in names]
    cache = {"folders": {"loras": {"paths": [str(folder)], "files": files}}}
    broken = {b["name"]: b["reason"] for b in broken_files(cache)}
    assert set(broken) == {"cut.safetensors", "gone.safetensors"}
    assert broken["cut.safetensors"].startswith("truncated") and broken["gone.safetensors"].startswith("unreadable")
