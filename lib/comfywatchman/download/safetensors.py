"""The safetensors header check: a file whose header promises more bytes than the file has is truncated.

A ``.safetensors`` file starts with an 8-byte little-endian header length N, then N bytes of JSON that give each
tensor's ``data_offsets`` into the data that follows. A download cut short, or a copy that stopped, leaves a file
ComfyUI fails on at load time with an unhelpful message; this check finds it from the first few kilobytes.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import regular_files

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
# Real headers are kilobytes to a few MiB; a larger claimed length is garbage, not a header.
MAX_HEADER = 100 * 1024 * 1024


def is_safetensors(name: str) -> bool:
    """Return whether ``name`` is a safetensors file by its extension."""
    return name.lower().endswith(SAFETENSORS_SUFFIXES)


# What is read in one call first: the whole header of most files (a few KiB), so a file costs one open, one
# fstat and one read (the report checks every installed file: tens of thousands).
FIRST_READ = 64 * 1024


def _read_upto(fd: int, count: int) -> bytes:
    """Return up to ``count`` bytes from ``fd``, fewer only at the end of the file."""
    chunks = []
    while count > 0:
        chunk = os.read(fd, min(count, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def _header(fd: int, size: int) -> tuple[int, object] | str:
    """Return ``(header length, parsed header)`` of the open safetensors file ``fd`` of ``size`` bytes, or
    why it has none that fits."""
    data = _read_upto(fd, min(FIRST_READ, size) if size else 8)
    if len(data) < 8:
        return f"truncated: {size} bytes, shorter than the 8-byte safetensors header length"
    (length,) = struct.unpack_from("<Q", data)
    if length > MAX_HEADER:
        return f"not a safetensors file: header length {length} is implausible"
    if 8 + length > size:
        return f"truncated: header needs {8 + length} bytes, the file has {size}"
    if 8 + length > len(data):
        data += _read_upto(fd, 8 + length - len(data))
    text = data[8 : 8 + length]
    try:
        return length, orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    try:  # what orjson refuses and the standard library reads (NaN, integers beyond 64 bits)
        return length, json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return "broken: the safetensors header is not valid JSON"


def truncation_reason(path: Path | str) -> str | None:
    """Return why the safetensors file at ``path`` is truncated or broken, or None when its header fits its size.

    Raises OSError when the file cannot be read at all (the caller says which file).
    """
    fd, opened = regular_files.open_regular(path)  # a pipe or a device under a model's name: refused
    try:
        size = opened.st_size
        found = _header(fd, size)
    finally:
        os.close(fd)
    return _verdict(found, size)


_LENGTH = struct.Struct("<Q")


def _verdict(found: tuple[int, object] | str, size: int) -> str | None:
    """Return why a file of ``size`` bytes whose header is ``found`` (``_header``) is broken, or None."""
    if isinstance(found, str):
        return found
    length, header = found
    if not isinstance(header, dict):
        return "broken: the safetensors header is not a JSON object"
    end = 0
    for key, entry in header.items():
        if key == "__metadata__" or not isinstance(entry, dict):
            continue
        offsets = entry.get("data_offsets")
        if isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets):
            end = max(end, offsets[1])
    if 8 + length + end > size:
        return f"truncated: tensors need {8 + length + end} bytes, the file has {size}"
    return None


def _quick_reason(path: str) -> str | None:
    """Return ``truncation_reason(path)``, the common case (the whole header in the first read, orjson reads
    it) in one open, fstat, read and close without the general path's calls: the report checks every
    installed file, tens of thousands of them, each cycle the model cache changes."""
    fd, opened = regular_files.open_regular(path)  # a pipe or a device under a model's name: refused
    try:
        size = opened.st_size
        data = os.read(fd, FIRST_READ if size > FIRST_READ else (size or 8))
        if len(data) >= 8:
            (length,) = _LENGTH.unpack_from(data)
            if 8 + length <= len(data) and length <= MAX_HEADER:
                try:
                    return _verdict((length, orjson.loads(data[8 : 8 + length])), size)
                except orjson.JSONDecodeError:
                    pass
        os.lseek(fd, 0, os.SEEK_SET)
        found = _header(fd, size)
    finally:
        os.close(fd)
    return _verdict(found, size)


def _joiner(base: str) -> Any:
    """Return a function of a model's name (``/``-separated) to its path under ``base``, as
    ``os.path.join(base, *name.split("/"))`` gives it, by concatenation where that is the same text."""
    simple = os.sep == "/" and not base.endswith("/")
    prefix = base + "/"

    def join(name: str) -> str:
        if simple and name and name[0] != "/" and "//" not in name:
            return prefix + name
        return os.path.join(base, *name.split("/"))

    return join


def broken_files(model_cache: dict[str, object]) -> list[dict[str, str]]:
    """Return ``{folder, name, path, reason}`` for every installed safetensors file of ``model_cache`` (the cache
    stage's artifact) that is truncated or unreadable: the report lists them as broken."""
    out: list[dict[str, str]] = []
    folders = model_cache.get("folders")
    if not isinstance(folders, dict):
        return out
    for folder, entry in sorted(folders.items()):
        joins = [_joiner(base) for base in entry["paths"]]
        for item in entry["files"]:
            name = item["name"]
            if not name.lower().endswith(SAFETENSORS_SUFFIXES):
                continue
            path = joins[item["dir"]](name)
            try:
                reason = _quick_reason(path)
            except OSError as exc:
                reason = f"unreadable: {exc.strerror or exc}"
            if reason:
                out.append({"folder": folder, "name": name, "path": path, "reason": reason})
    return out


def installed_broken(state_dir: Path) -> list[dict[str, str]]:
    """Return :func:`broken_files` of ``state_dir/model_cache.json`` (empty when it is missing or broken: the
    cache stage reports that itself). The report's hook."""
    # Imported here: the report's header check process (below) imports this module and needs no schemas.
    from comfywatchman import artifacts
    from comfywatchman.errors import ArtifactError

    try:
        model_cache = artifacts.read_optional(state_dir / "model_cache.json", "model_cache")
    except ArtifactError:
        return []
    return broken_files(model_cache or {})


if __name__ == "__main__":
    # The report's header check in a process of its own (``reporting.broken_models``): ``broken_files`` of the
    # model_cache.json named, as JSON on stdout. The report validates that file itself and uses this answer
    # only when it is valid, so it is parsed here without the schemas (whose import would double this
    # process's start).
    import sys

    sys.stdout.buffer.write(orjson.dumps(broken_files(orjson.loads(Path(sys.argv[1]).read_bytes()))))
