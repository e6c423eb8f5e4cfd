"""file_identity: one version of a file told from another by its stat, never its bytes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from comfywatchman import file_identity


def test_a_file_written_again_or_edited_is_another_version(tmp_path: Path) -> None:
    path = tmp_path / "model_cache.json"
    path.write_bytes(b"one")
    first = file_identity.of(path)
    assert first is not None and first == file_identity.of(str(path))
    # Written again through a rename (as every artifact is), with the same bytes, size and mtime.
    other = tmp_path / "next"
    other.write_bytes(b"one")
    os.utime(other, ns=(first[1], first[1]))
    other.replace(path)
    second = file_identity.of(path)
    assert second is not None and second != first and second[:2] == first[:2]
    if sys.platform == "win32":
        return  # st_ctime is the creation time there
    # Edited in place, its mtime put back: the ctime still moved (once the file system's clock has ticked).
    time.sleep(0.05)
    with open(path, "r+b") as handle:
        handle.write(b"two")
    os.utime(path, ns=(second[1], second[1]))
    third = file_identity.of(path)
    assert third is not None and third != second and third[:2] == second[:2]


def test_no_file_has_no_identity(tmp_path: Path) -> None:
    assert file_identity.of(tmp_path / "missing.json") is None
    assert file_identity.of("name\0with a nul") is None
