"""Workflows embedded in images: PNG text chunks and WebP EXIF, as ComfyUI and its frontend write them.

ComfyUI's SaveImage puts the API prompt in a ``prompt`` chunk and the UI workflow in a ``workflow`` chunk
(``tEXt``; other tools write ``iTXt`` or ``zTXt``). SaveAnimatedWEBP writes ``workflow:<json>`` into EXIF tag
0x010F (Make) and ``prompt:<json>`` into 0x0110 (Model). Nothing here decodes pixels.
"""

from __future__ import annotations

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KEYS = ("workflow", "prompt")
# A text chunk that inflates past this is not a workflow a person saved; refuse it rather than fill memory.
MAX_TEXT_BYTES = 64 * 1024 * 1024


class ImageError(ValueError):
    """An image whose structure is broken where the workflow should be; the message says what."""


def kind(raw: bytes) -> str | None:
    """Return ``"png"`` or ``"webp"`` when ``raw`` starts like one, else None."""
    if raw.startswith(PNG_SIGNATURE):
        return "png"
    if len(raw) >= 12 and raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "webp"
    return None


def embedded_texts(raw: bytes) -> dict[str, str]:
    """Return the ``workflow`` / ``prompt`` texts embedded in the PNG or WebP ``raw`` (only those found).

    Raise ImageError when the container is truncated or a compressed chunk cannot be inflated.
    """
    found = kind(raw)
    if found == "png":
        return _png_texts(raw)
    if found == "webp":
        return _webp_texts(raw)
    return {}


def _png_texts(raw: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(raw):
        length, ctype = struct.unpack(">I4s", raw[pos : pos + 8])
        data = raw[pos + 8 : pos + 8 + length]
        if len(data) < length:
            raise ImageError(f"PNG chunk {ctype!r} is truncated")
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        keyword, _, rest = data.partition(b"\0")
        key = keyword.decode("latin-1")
        if key not in KEYS or key in texts:
            continue
        texts[key] = _png_chunk_text(ctype, rest)
    return texts


def _png_chunk_text(ctype: bytes, rest: bytes) -> str:
    if ctype == b"tEXt":
        # The PNG spec says Latin-1; ComfyUI (through Pillow) writes UTF-8 JSON, which is ASCII in practice.
        return _decode(rest)
    if ctype == b"zTXt":
        return _decode(_inflate(rest[1:]))
    # iTXt: compression flag, method, language tag \0, translated keyword \0, text
    if len(rest) < 2:
        raise ImageError("iTXt chunk is truncated")
    compressed = rest[0] == 1
    _lang, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return (_inflate(text) if compressed else text).decode("utf-8", errors="replace")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as exc:
        raise ImageError(f"compressed text chunk cannot be inflated ({exc})") from None
    if inflater.unconsumed_tail:
        raise ImageError(f"compressed text chunk inflates past {MAX_TEXT_BYTES} bytes")
    return out


def _webp_texts(raw: bytes) -> dict[str, str]:
    texts: dict[str, str] = {}
    pos = 12
    while pos + 8 <= len(raw):
        ctype, length = struct.unpack("<4sI", raw[pos : pos + 8])
        data = raw[pos + 8 : pos + 8 + length]
        if len(data) < length:
            raise ImageError(f"WebP chunk {ctype!r} is truncated")
        pos += 8 + length + (length & 1)  # chunks are padded to an even size
        if ctype == b"EXIF":
            texts.update({k: v for k, v in exif_texts(data).items() if k not in texts})
    return texts


def exif_texts(data: bytes) -> dict[str, str]:
    """Return the ``key:value`` strings of the first IFD of the EXIF block ``data`` whose key is in KEYS."""
    if data.startswith(b"Exif\0\0"):
        data = data[6:]
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return {}
    endian = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", data[4:8])
    if offset + 2 > len(data):
        return {}
    (count,) = struct.unpack(endian + "H", data[offset : offset + 2])
    texts: dict[str, str] = {}
    for index in range(count):
        entry = offset + 2 + 12 * index
        if entry + 12 > len(data):
            break
        _tag, type_, n = struct.unpack(endian + "HHI", data[entry : entry + 8])
        if type_ not in (2, 7) or n <= 4:  # ASCII or UNDEFINED; a workflow never fits in the 4 inline bytes
            continue
        (value_at,) = struct.unpack(endian + "I", data[entry + 8 : entry + 12])
        value = _decode(data[value_at : value_at + n].rstrip(b"\0"))
        key, sep, text = value.partition(":")
        if sep and key in KEYS and key not in texts:
            texts[key] = text
    return texts
