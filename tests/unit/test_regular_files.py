"""Files the cycle reads are regular files: a pipe or a device under a file's name is refused at once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from comfywatchman import regular_files


def test_a_regular_file_is_read_whole_or_up_to_a_limit(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_bytes(b"x" * 200_000)
    assert regular_files.read_regular(path) == b"x" * 200_000
    assert regular_files.read_regular(path, 1001) == b"x" * 1001
    (tmp_path / "empty.json").write_bytes(b"")
    assert regular_files.read_regular(tmp_path / "empty.json") == b""


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_pipe_with_no_writer_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.json")
    with pytest.raises(OSError, match=r"^not a regular file \(a named pipe\)$"):
        regular_files.read_regular(tmp_path / "pipe.json")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero here")
def test_a_link_to_a_device_is_refused_not_read_forever(tmp_path: Path) -> None:
    (tmp_path / "zero.safetensors").symlink_to("/dev/zero")
    with pytest.raises(OSError, match=r"^not a regular file \(a device\)$"):
        regular_files.open_regular(tmp_path / "zero.safetensors")
    with pytest.raises(OSError, match=r"a folder"):
        regular_files.open_regular(tmp_path)


def test_a_missing_file_raises_what_open_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        regular_files.read_regular(tmp_path / "gone.json")
