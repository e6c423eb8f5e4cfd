"""Malformed workflow files made from the real templates corpus (``comfyui-workflow-templates-json``), and the
measurements the fuzz suite takes when it reads them.

Every file starts from a real template (a UI workflow) or its API form, is changed by one to three data
mutations (type swaps, deleted keys, deep nesting, lone surrogates, huge numbers, NaN, lists for scalars,
broken links, subgraph fan-out, ...), is written as JSON, a PNG text chunk (tEXt, iTXt or zTXt) or WebP
EXIF, and may then be cut short or have bytes flipped. A seeded ``random.Random`` makes each file again
from its number, so a failure names a file anyone can rebuild.
"""

from __future__ import annotations

import json
import math
import random
import re
import resource
import struct
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from comfywatchman import resources
from comfywatchman.workflow import extract, parse_worker
from comfywatchman.workflow.load import NotAWorkflow
from tests.helpers.limits import DeadlinePassed, deadline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Raw JSON text some mutations put in place of a value (json.dumps cannot write them): huge numbers, and
# nesting deeper than json.dumps itself can recurse.
RAW_MARK = "\x00RAW{}\x00"
RAW_VALUES = ["1" * 5000, "1e99999", "-1e99999", "123456789012345678901234567890", "NaN", "-Infinity"]
_RAW_PATTERN = re.compile(r'"\\u0000RAW(\w+)\\u0000"')
# A file taking longer than this to read is a hang.
HANG_S = 20.0
MAX_WORKFLOW_MB = 32


@cache
def templates() -> list[tuple[str, bytes]]:
    """Return (name, bytes) of every template of the corpus (workflows only, not its index files)."""
    import comfyui_workflow_templates_json as corpus  # a test dependency; importorskip in the tests

    folder = Path(corpus.__file__).parent / "templates"
    return [
        (p.name, p.read_bytes())
        for p in sorted(folder.glob("*.json"))
        if not p.name.startswith(("index", "fuse_options"))
    ]


@cache
def scan_settings() -> tuple[dict[str, list[extract.LoaderInput]], frozenset[str]]:
    """Return the shipped loader table and placeholders, as the scan stage uses them."""
    defaults = tomllib.loads(resources.DEFAULT_CONFIG.read_text(encoding="utf-8"))["scan"]
    placeholders = frozenset(v.strip().casefold() for v in defaults["placeholder_values"])
    return extract.loader_table(defaults["loaders"]), placeholders


# -- containers ---------------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def as_png(key: str, text: bytes, style: str) -> bytes:
    """Return a 1x1 PNG carrying ``text`` under ``key`` in a tEXt, iTXt or zTXt chunk (``style``)."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    if style == "tEXt":
        body = _chunk(b"tEXt", key.encode() + b"\0" + text)
    elif style == "zTXt":
        body = _chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(text))
    else:
        compressed = len(text) % 2 == 0
        payload = zlib.compress(text) if compressed else text
        body = _chunk(b"iTXt", key.encode() + b"\0" + bytes([int(compressed), 0]) + b"\0\0" + payload)
    idat = _chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    return PNG_SIGNATURE + ihdr + body + idat + _chunk(b"IEND", b"")


def as_webp(key: str, text: bytes) -> bytes:
    """Return a WebP whose EXIF holds ``key:text`` in tag 0x010F, as SaveAnimatedWEBP writes it."""
    value = key.encode() + b":" + text + b"\0"
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, len(value), 26) + struct.pack("<I", 0)
    exif = b"II*\0" + struct.pack("<I", 8) + ifd + value
    chunk = b"EXIF" + struct.pack("<I", len(exif)) + exif + (b"\0" if len(exif) % 2 else b"")
    vp8 = b"VP8L" + struct.pack("<I", 5) + b"\x2f\0\0\0\0" + b"\0"
    body = b"WEBP" + vp8 + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body


def to_api(data: dict[str, Any]) -> dict[str, Any]:
    """Return the API prompt form of a UI workflow's top level (class_type and widget inputs by name)."""
    prompt: dict[str, Any] = {}
    for node in data.get("nodes") or []:
        names = [i["widget"]["name"] for i in node.get("inputs") or [] if isinstance(i.get("widget"), dict)]
        values = node.get("widgets_values")
        values = list(values.values()) if isinstance(values, dict) else values or []
        inputs = {names[i] if i < len(names) else f"w{i}": v for i, v in enumerate(values)}
        prompt[str(node.get("id"))] = {"class_type": node.get("type"), "inputs": inputs}
    return prompt


# -- mutations ----------------------------------------------------------------------------------------


def _containers(data: Any, limit: int = 20_000) -> list[Any]:
    """Return up to ``limit`` dicts and lists inside ``data`` (breadth first)."""
    found: list[Any] = []
    pending = [data]
    while pending and len(found) < limit:
        item = pending.pop(0) if len(pending) < 64 else pending.pop()
        found.append(item)
        children = item.values() if isinstance(item, dict) else item
        pending.extend(c for c in children if isinstance(c, (dict, list)))
    return found


def _interesting(data: Any) -> list[Any]:
    """Return the places bugs live: nodes, their inputs and widgets, links, subgraph inputs and linkIds."""
    spots: list[Any] = []
    definitions = data.get("definitions") if isinstance(data, dict) else None
    graphs = [data, *((definitions or {}).get("subgraphs") or [] if isinstance(definitions, dict) else [])]
    for graph in graphs:
        if not isinstance(graph, dict):
            continue
        spots.append(graph)
        for key in ("nodes", "links", "inputs"):
            if isinstance(graph.get(key), list):
                spots.append(graph[key])
                spots.extend(x for x in graph[key][:50] if isinstance(x, (dict, list)))
        for node in (graph.get("nodes") or [])[:50] if isinstance(graph.get("nodes"), list) else []:
            for key in ("inputs", "widgets_values", "properties"):
                if isinstance(node, dict) and isinstance(node.get(key), (dict, list)):
                    spots.append(node[key])
    return spots


def _pick(rng: random.Random, data: Any) -> tuple[Any, Any] | None:
    """Return (container, key or index) of a random slot in ``data``, favouring the interesting places."""
    pool = _interesting(data) if rng.random() < 0.6 else _containers(data)
    pool = [c for c in pool if c]
    if not pool:
        return None
    container = rng.choice(pool)
    key = rng.choice(list(container)) if isinstance(container, dict) else rng.randrange(len(container))
    return container, key


def _other_type(rng: random.Random, value: Any) -> Any:
    choices: list[Any] = [None, True, 7, -1, 3.5, "x", "", [], {}, [1, 2], {"a": 1}, [[50]], "\ud800.safetensors"]
    return rng.choice([c for c in choices if type(c) is not type(value)] or choices)


def _swap_type(rng: random.Random, data: Any) -> None:
    slot = _pick(rng, data)
    if slot:
        container, key = slot
        container[key] = _other_type(rng, container[key])


def _delete_key(rng: random.Random, data: Any) -> None:
    dicts = [c for c in _interesting(data) + _containers(data, 2000) if isinstance(c, dict) and c]
    if dicts:
        target = rng.choice(dicts)
        del target[rng.choice(list(target))]


def _deep_nesting(rng: random.Random, data: Any) -> None:
    slot = _pick(rng, data)
    if slot:
        container, key = slot
        depth = rng.choice([600, 1100, 3000, 20_000])
        container[key] = RAW_MARK.format(f"{rng.choice(['list', 'dict'])}{depth}")


def _surrogate(rng: random.Random, data: Any) -> None:
    strings = [
        (c, k)
        for c in _containers(data, 5000)
        for k in (c if isinstance(c, dict) else range(len(c)))
        if isinstance(c[k], str)
    ]
    if strings:
        container, key = rng.choice(strings)
        lone = rng.choice(["\ud800", "\udfff", "\udc80", "\ud83d"])
        container[key] = container[key][: rng.randrange(len(container[key]) + 1)] + lone + ".safetensors"
    if isinstance(data, dict) and rng.random() < 0.3:
        data["\udc00key"] = "\ud800"


def _raw_number(rng: random.Random, data: Any) -> None:
    slot = _pick(rng, data)
    if slot:
        container, key = slot
        container[key] = RAW_MARK.format(rng.randrange(len(RAW_VALUES)))


def _nan(rng: random.Random, data: Any) -> None:
    slot = _pick(rng, data)
    if slot:
        container, key = slot
        container[key] = rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0])


def _list_for_scalar(rng: random.Random, data: Any) -> None:
    slot = _pick(rng, data)
    if slot:
        container, key = slot
        value = container[key]
        container[key] = [value] if not isinstance(value, list) else (value[0] if value else "x")


def _broken_links(rng: random.Random, data: Any) -> None:
    for graph in _interesting(data):
        if isinstance(graph, dict) and isinstance(graph.get("links"), list) and graph["links"]:
            link = rng.choice(graph["links"])
            if isinstance(link, list) and link:
                link[0] = rng.choice([[link[0]], {"id": 1}, None, "7", 1.5])
            elif isinstance(link, dict):
                link["id"] = rng.choice([[1], {"x": 1}, None])
        if isinstance(graph, dict) and isinstance(graph.get("inputs"), list):
            for entry in graph["inputs"]:
                if isinstance(entry, dict) and "linkIds" in entry:
                    entry["linkIds"] = rng.choice([7, "7", {"a": 1}, [[1]], None])


def _subgraph_bomb(rng: random.Random, data: Any) -> None:
    """Add a chain or a fan-out of subgraph definitions reached from the top level."""
    if not isinstance(data, dict):
        return
    levels = rng.choice([30, 200, 2000])
    fan = rng.random() < 0.5
    if fan:
        levels = min(levels, 40)
    subgraphs = []
    for i in range(levels):
        inner = [{"id": j, "type": f"bomb{i + 1}", "mode": 0} for j in range(2 if fan else 1)]
        if i + 1 == levels:
            inner = [{"id": 1, "type": "VAELoader", "widgets_values": ["bomb.safetensors"]}]
        subgraphs.append({"id": f"bomb{i}", "name": f"b{i}", "nodes": inner, "links": [], "inputs": []})
    definitions = data.setdefault("definitions", {})
    if isinstance(definitions, dict):
        existing = definitions.get("subgraphs")
        definitions["subgraphs"] = (existing if isinstance(existing, list) else []) + subgraphs
    if isinstance(data.get("nodes"), list):
        data["nodes"].append({"id": 99999, "type": "bomb0", "mode": 0})


def _many_node_types(rng: random.Random, data: Any) -> None:
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        count = rng.choice([2000, 12_000])
        data["nodes"].extend({"id": 100_000 + i, "type": f"Fuzz{i}", "widgets_values": []} for i in range(count))


def _duplicate_nodes(rng: random.Random, data: Any) -> None:
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and data["nodes"]:
        data["nodes"] = data["nodes"] * rng.choice([5, 50])


DATA_MUTATIONS: dict[str, Callable[[random.Random, Any], None]] = {
    "swap_type": _swap_type,
    "delete_key": _delete_key,
    "deep_nesting": _deep_nesting,
    "surrogate": _surrogate,
    "huge_number": _raw_number,
    "nan": _nan,
    "list_for_scalar": _list_for_scalar,
    "broken_links": _broken_links,
    "subgraph_bomb": _subgraph_bomb,
    "many_node_types": _many_node_types,
    "duplicate_nodes": _duplicate_nodes,
}
# Weights: the cheap, common faults most often; the bombs now and then.
WEIGHTS = {name: 1.0 for name in DATA_MUTATIONS} | {
    "subgraph_bomb": 0.3,
    "many_node_types": 0.2,
    "duplicate_nodes": 0.3,
}


def _serialize(data: Any, rng: random.Random) -> bytes:
    text = json.dumps(data, ensure_ascii=rng.random() < 0.8, separators=(",", ":") if rng.random() < 0.5 else None)
    text = _RAW_PATTERN.sub(lambda m: _raw_text(m.group(1)), text)
    # ensure_ascii=False keeps lone surrogates as such: written the way a careless tool would (surrogatepass).
    return text.encode("utf-8", "surrogatepass")


def _raw_text(spec: str) -> str:
    if spec.isdigit():
        return RAW_VALUES[int(spec)]
    if spec.startswith("list"):
        depth = int(spec[4:])
        return "[" * depth + '"deep.safetensors"' + "]" * depth
    depth = int(spec[4:])
    return '{"k":' * depth + "1" + "}" * depth


def _byte_damage(rng: random.Random, raw: bytes) -> tuple[bytes, str]:
    kind = rng.choice(["truncate", "flip", "flip", "insert"])
    if kind == "truncate":
        return raw[: rng.randrange(len(raw) + 1)], kind
    buffer = bytearray(raw)
    for _ in range(rng.choice([1, 3, 20])):
        position = rng.randrange(len(buffer)) if buffer else 0
        if kind == "flip" and buffer:
            buffer[position] ^= 1 << rng.randrange(8)
        else:
            buffer[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    return bytes(buffer), kind


@dataclass
class Fuzzed:
    """One malformed file: its name, bytes, and what was done to it."""

    name: str
    content: bytes
    mutations: list[str] = field(default_factory=list)


def make(number: int, seed: int = 10) -> Fuzzed:
    """Return fuzzed file ``number`` (the same bytes for the same number and seed)."""
    rng = random.Random(seed * 1_000_003 + number)
    name, raw = rng.choice(templates())
    data = json.loads(raw)
    api = rng.random() < 0.2
    if api:
        data = to_api(data)
    done = ["api"] if api else []
    for mutation in rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()), k=rng.choice([1, 1, 2, 3])):
        DATA_MUTATIONS[mutation](rng, data)
        done.append(mutation)
    text = _serialize(data, rng)
    container = rng.choice(["json", "json", "json", "png", "webp"])
    stem = f"fuzz{number:05d}-{Path(name).stem[:40]}"
    if container == "png":
        style = rng.choice(["tEXt", "iTXt", "zTXt"])
        content = as_png("prompt" if api else "workflow", text, style)
        done.append(style)
    elif container == "webp":
        content = as_webp("prompt" if api else "workflow", text)
        done.append("exif")
    else:
        content = text
    if rng.random() < 0.25:
        content, damage = _byte_damage(rng, content)
        done.append(damage)
    return Fuzzed(f"{stem}.{container}", content, done)


def corpus(count: int, seed: int = 10) -> Iterator[Fuzzed]:
    """Yield ``count`` fuzzed files."""
    for number in range(count):
        yield make(number, seed)


# -- reading and measuring ----------------------------------------------------------------------------


@dataclass
class Figures:
    """What the fuzz suite measured."""

    tried: int = 0
    parsed: int = 0
    errors: int = 0
    not_workflows: int = 0
    crashes: list[str] = field(default_factory=list)
    hangs: list[str] = field(default_factory=list)
    max_seconds: float = 0.0
    slowest: str = ""
    max_rss_rise_mb: float = 0.0
    biggest: str = ""
    by_mutation: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        peak = peak_rss_mb()
        return (
            f"fuzz: {self.tried} files tried: {self.parsed} read, {self.errors} error rows, "
            f"{self.not_workflows} not workflows; crashes {len(self.crashes)}, hangs {len(self.hangs)}; "
            f"max {self.max_seconds:.3f} s per file ({self.slowest}); max RSS rise {self.max_rss_rise_mb:.1f} MB "
            f"per file ({self.biggest}); peak RSS {peak:.0f} MB"
        )


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_one(path: Path, figures: Figures, label: str) -> None:
    """Read ``path`` through the scan's own per-file code and record the outcome in ``figures``.

    A crash is any exception; a hang is a read past HANG_S. A result must be one the scan can write.
    """
    loaders, placeholders = scan_settings()
    figures.tried += 1
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    try:
        with deadline(HANG_S):
            answer, _whole = parse_worker.requirements_of(
                str(path), loaders, placeholders, path.stat().st_size, MAX_WORKFLOW_MB * 1_000_000
            )
        if isinstance(answer, str):
            assert answer.startswith(str(path)), answer
            answer.encode("utf-8")
            figures.errors += 1
        else:
            json.dumps(answer, ensure_ascii=False, allow_nan=False).encode("utf-8")
            figures.parsed += 1
    except NotAWorkflow:
        figures.not_workflows += 1
    except DeadlinePassed:
        figures.hangs.append(label)
    except Exception as exc:
        figures.crashes.append(f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
    elapsed = time.perf_counter() - started
    if elapsed > figures.max_seconds:
        figures.max_seconds, figures.slowest = elapsed, label
    rise = peak_rss_mb() - rss_before
    if rise > figures.max_rss_rise_mb:
        figures.max_rss_rise_mb, figures.biggest = rise, label
