"""Model files with real content: a folder of LoRAs for the walks, and for download tests valid safetensors bytes,
their hashes, a progress recorder."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path


def loras_tree(root: Path) -> Path:
    """Make ``root/loras`` with three model files at three depths, a text file, a hidden folder, a link back to
    the folder (a loop) and a broken link; return the folder."""
    folder = root / "loras"
    (folder / "SDXL" / "deep").mkdir(parents=True)
    (folder / "a.safetensors").write_bytes(b"x" * 10)
    (folder / "SDXL" / "b.SAFETENSORS").write_bytes(b"x" * 20)
    (folder / "SDXL" / "deep" / "c.pt").write_bytes(b"x" * 30)
    (folder / "notes.txt").write_text("not a model", encoding="utf-8")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "h.safetensors").write_bytes(b"x")
    (folder / "SDXL" / "loop").symlink_to(folder)  # walked once
    (folder / "gone.safetensors").symlink_to(root / "nowhere.safetensors")  # broken: not a model file
    return folder


def safetensors_bytes(data_size: int, seed: int = 1) -> bytes:
    """Return a valid safetensors file with one U8 tensor of ``data_size`` pseudo-random bytes."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}).encode()
    header += b" " * (-len(header) % 8)
    body = (
        hashlib.shake_256(f"seed{seed}".encode()).digest(data_size) if data_size < 8_000_000 else os.urandom(data_size)
    )
    return struct.pack("<Q", len(header)) + header + body


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Recorder:
    """A progress factory that keeps what it was told."""

    def __init__(self) -> None:
        self.bars: list[dict[str, object]] = []

    def __call__(self, label: str, total: int | None, initial: int) -> Recorder:
        self.bars.append({"label": label, "total": total, "initial": initial, "bytes": 0})
        return self

    def update(self, count: int) -> None:
        self.bars[-1]["bytes"] = int(self.bars[-1]["bytes"]) + count  # type: ignore[call-overload]

    def close(self) -> None:
        pass
