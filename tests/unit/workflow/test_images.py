"""Workflows embedded in PNG (tEXt, iTXt, zTXt) and WebP (EXIF) files, built byte by byte."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from comfywatchman.workflow import images
from comfywatchman.workflow.load import WorkflowError, parse_bytes

UI = {
    "nodes": [{"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["a.safetensors"]}],
    "links": [],
}
API = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "b.safetensors"}}}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(*chunks: bytes) -> bytes:
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    return images.PNG_SIGNATURE + ihdr + b"".join(chunks) + _chunk(b"IEND", b"")


def text(key: str, value: str) -> bytes:
    return _chunk(b"tEXt", key.encode() + b"\0" + value.encode())


def ztxt(key: str, value: str) -> bytes:
    return _chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(value.encode()))


def itxt(key: str, value: str, compressed: bool) -> bytes:
    body = zlib.compress(value.encode()) if compressed else value.encode()
    return _chunk(b"iTXt", key.encode() + b"\0" + bytes([int(compressed), 0]) + b"en\0\0" + body)


def webp(exif: bytes) -> bytes:
    chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\0" if len(exif) % 2 else b"")
    vp8 = b"VP8L" + struct.pack("<I", 5) + b"\x2f\0\0\0\0" + b"\0"
    body = b"WEBP" + vp8 + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def exif(entries: dict[int, str]) -> bytes:
    """Little-endian TIFF with one IFD of ASCII entries, as Pillow writes ComfyUI's WebP metadata."""
    count = len(entries)
    data_at = 8 + 2 + 12 * count + 4
    ifd, blob = b"", b""
    for tag, value in sorted(entries.items()):
        raw = value.encode() + b"\0"
        ifd += struct.pack("<HHII", tag, 2, len(raw), data_at + len(blob))
        blob += raw
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", count) + ifd + b"\0\0\0\0" + blob


@pytest.mark.parametrize(
    "chunk",
    [
        text("workflow", json.dumps(UI)),
        ztxt("workflow", json.dumps(UI)),
        itxt("workflow", json.dumps(UI), True),
        itxt("workflow", json.dumps(UI), False),
    ],
    ids=["tEXt", "zTXt", "iTXt-compressed", "iTXt-plain"],
)
def test_parse_bytes_reads_ui_workflow_from_each_png_text_chunk(chunk: bytes) -> None:
    workflow = parse_bytes(png(chunk), Path("x.png"))
    assert (workflow.format, workflow.container) == ("ui", "png")
    assert workflow.data["nodes"][0]["widgets_values"] == ["a.safetensors"]


def test_parse_bytes_prefers_workflow_chunk_over_prompt_chunk() -> None:
    workflow = parse_bytes(png(text("prompt", json.dumps(API)), text("workflow", json.dumps(UI))), Path("x.png"))
    assert workflow.format == "ui"


def test_parse_bytes_falls_back_to_prompt_when_workflow_chunk_is_broken() -> None:
    workflow = parse_bytes(png(text("workflow", "{broken"), text("prompt", json.dumps(API))), Path("x.png"))
    assert (workflow.format, workflow.container) == ("api", "png")


def test_parse_bytes_names_file_for_png_without_workflow() -> None:
    with pytest.raises(WorkflowError, match=r"^render\.png: PNG image without an embedded workflow"):
        parse_bytes(png(text("parameters", "a photo")), Path("render.png"))


def test_parse_bytes_names_file_for_truncated_png() -> None:
    raw = png(text("workflow", json.dumps(UI)))
    with pytest.raises(WorkflowError, match=r"^cut\.png: broken PNG image"):
        parse_bytes(raw[:60], Path("cut.png"))


def test_parse_bytes_reads_workflow_and_prompt_from_webp_exif() -> None:
    raw = webp(exif({0x010F: "workflow:" + json.dumps(UI), 0x0110: "prompt:" + json.dumps(API)}))
    workflow = parse_bytes(raw, Path("anim.webp"))
    assert (workflow.format, workflow.container) == ("ui", "webp")
    assert images.embedded_texts(raw)["prompt"] == json.dumps(API)


def test_parse_bytes_reads_api_prompt_from_webp_with_prompt_only() -> None:
    workflow = parse_bytes(webp(exif({0x0110: "prompt:" + json.dumps(API)})), Path("anim.webp"))
    assert workflow.format == "api"
