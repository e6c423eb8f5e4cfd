"""Cache files of the stages (``cache_files``): written whole or not at all, and a checked one gives back its body
only when it is whole and of the asked format."""

from __future__ import annotations

import hashlib
import zlib
from pathlib import Path

import pytest

from comfywatchman import artifacts
from comfywatchman.stages import cache_files


def test_a_cache_file_is_written_whole_and_a_failed_write_leaves_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sub" / "memo.bin"
    cache_files.write_cache(path, b"one ", b"two")
    assert path.read_bytes() == b"one two"

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "replace_unflushed", fail)  # the rename, whichever call makes it
    with pytest.raises(OSError):
        cache_files.write_cache(path, b"three")
    assert path.read_bytes() == b"one two"
    assert sorted(p.name for p in path.parent.iterdir()) == ["memo.bin"]  # no temp file left behind


def test_a_checked_file_gives_back_its_body_and_refuses_another_tag_or_a_torn_body(tmp_path: Path) -> None:
    path = tmp_path / "record.bin"
    assert cache_files.read_checked(path, b"tag-1") is None  # none yet
    cache_files.write_checked(path, b"tag-1", b'{"a": [1, 2]}\nsecond line')
    assert cache_files.read_checked(path, b"tag-1") == b'{"a": [1, 2]}\nsecond line'
    with pytest.raises(cache_files.OtherFormat):
        cache_files.read_checked(path, b"tag-2")
    data = path.read_bytes()
    for broken in (data[:-3], data[:-1] + b"X", data.replace(b"[1, 2]", b"[1, 3]")):
        path.write_bytes(broken)
        with pytest.raises(ValueError, match="checksum") as raised:
            cache_files.read_checked(path, b"tag-1")
        assert not isinstance(raised.value, cache_files.OtherFormat)


def test_a_checked_file_written_with_a_sha256_by_an_earlier_version_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "record.bin"
    body = b'{"a": [1, 2]}'
    path.write_bytes(b"tag-1\n" + hashlib.sha256(body).hexdigest().encode("ascii") + b"\n" + body)
    assert cache_files.read_checked(path, b"tag-1") == body
    path.write_bytes(path.read_bytes()[:-1] + b"]")
    with pytest.raises(ValueError, match="checksum"):
        cache_files.read_checked(path, b"tag-1")
    cache_files.write_checked(path, b"tag-1", body)
    assert path.read_bytes().split(b"\n")[1] == b"crc32:%08x" % zlib.crc32(body)
