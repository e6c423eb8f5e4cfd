"""The safetensors header check, on real file bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from comfywatchman.download.safetensors import FIRST_READ, broken_files, truncation_reason
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
        (struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid JSON"),
        (struct.pack("<Q", 0), "not valid JSON"),
        (b"", "0 bytes, shorter than the 8-byte"),
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


def _with_header(header: dict[str, object], data_size: int) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"\0" * data_size


def test_a_header_longer_than_the_first_read_is_read_whole(tmp_path: Path) -> None:
    # Real headers reach megabytes (one entry per tensor): what the first read leaves is read after it.
    tensors = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(5000)}
    content = _with_header({"__metadata__": {"x": "y"}, **tensors}, 5000)
    assert len(content) > 2 * FIRST_READ
    path = tmp_path / "big.safetensors"
    path.write_bytes(content)
    assert truncation_reason(path) is None
    path.write_bytes(content[:-1])
    assert "tensors need" in (truncation_reason(path) or "")


def test_a_header_only_the_standard_library_reads_still_counts(tmp_path: Path) -> None:
    # NaN in metadata and integers beyond 64 bits are JSON to Python, if not to orjson.
    text = (
        b'{"__metadata__": {"lr": NaN}, "w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}, "n": '
        + b"9" * 30
        + b"}"
    )
    path = tmp_path / "nan.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"abcd")
    assert truncation_reason(path) is None
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"abc")
    assert "tensors need" in (truncation_reason(path) or "")


def test_a_folder_named_like_a_model_is_unreadable(tmp_path: Path) -> None:
    (tmp_path / "dir.safetensors").mkdir()
    with pytest.raises(OSError):
        truncation_reason(tmp_path / "dir.safetensors")


def test_broken_files_says_what_truncation_reason_says_of_each_file(tmp_path: Path) -> None:
    # broken_files reads the common case in one call of its own: the same verdict, file by file, as the general
    # check, for every kind of file above (and a header longer than the first read, and one orjson refuses).
    folder = tmp_path / "checkpoints"
    (folder / "sub").mkdir(parents=True)
    tensors = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(5000)}
    contents = {
        "good.safetensors": safetensors_bytes(1000),
        "sub/cut.safetensors": safetensors_bytes(1000)[:-1],
        "short.sft": safetensors_bytes(1000)[:20],
        "tiny.safetensors": b"\x01\x02",
        "empty.safetensors": b"",
        "huge.safetensors": struct.pack("<Q", 2**40) + b"{}",
        "nope.safetensors": struct.pack("<Q", 4) + b"nope",
        "list.SAFETENSORS": struct.pack("<Q", 2) + b"[]",
        "big.safetensors": _with_header(tensors, 5000),
        "bigcut.safetensors": _with_header(tensors, 4999),
        "nan.safetensors": struct.pack("<Q", 12) + b'{"a": NaN } ',
    }
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    names = [*contents, "gone.safetensors", "sub//cut.safetensors"]
    cache = {"folders": {"checkpoints": {"paths": [str(folder)], "files": [{"name": n, "dir": 0} for n in names]}}}
    found = {b["name"]: b for b in broken_files(cache)}
    for name in names:
        path = str(folder.joinpath(*name.split("/")))
        try:
            expected = truncation_reason(path)
        except OSError as exc:
            expected = f"unreadable: {exc.strerror or exc}"
        assert (found[name]["reason"] if name in found else None) == expected, name
        if name in found:
            assert found[name]["path"] == path
    assert "good.safetensors" not in found and "big.safetensors" not in found and "nan.safetensors" not in found
