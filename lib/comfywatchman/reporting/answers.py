"""What the search answered about each missing file, kept compact for the report: only the fields the report
shows, keyed by (folder type, lookup key of the name), with a digest per file so a workflow's part of the
report can be reused while the answers it depends on are unchanged (``parts``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import orjson

from comfywatchman import artifacts, resources
from comfywatchman.workflow import names

Key = tuple[str | None, str]
CANDIDATE_FIELDS = ("name", "source", "url", "reason", "size")
# What a missing file that no search answered shows (not searched yet).
NO_ANSWER: Mapping[str, Any] = {
    "status": "NOT_SEARCHED",
    "source": "scan",
    "url": None,
    "evidence": "none",
    "reason": "",
    "candidates": [],
    "size": None,
}
_NO_DIGEST = b"-"


@lru_cache(maxsize=1 << 17)
def lookup(name: str) -> str:
    """Return ``names.lookup_key(name)``, remembered: the report asks for the same names tens of thousands of
    times (every workflow that misses a file, then its action)."""
    return names.lookup_key(name)


def key(folder: str | None, name: str) -> Key:
    """Return the key a file's answer is kept under: its folder type and the lookup key of its name."""
    return folder, lookup(name)


def access(result: Mapping[str, Any]) -> tuple[str | None, str]:
    """Return ``(page, what to do)`` for a NEEDS_ACCESS result: the page where access is granted, and the
    instruction naming the token to set (by name, never its value)."""
    grant = result.get("details", {}).get("access") or {}
    page, token = grant.get("page"), grant.get("token", "the service's token")
    why = grant.get("why") or result.get("reason", "access needed")
    where = f"get access at {page}" if page else "get access to it"
    return page, f"{why}: {where}, then set {token} to that account's token"


def project(result: Mapping[str, Any]) -> dict[str, Any]:
    """Return what the report keeps of one search result: status, who answered, the URL (for NEEDS_ACCESS the
    page where access is granted), the evidence, why (for NEEDS_ACCESS what to do), the candidates (the
    fields a person compares) and the size."""
    status = result["status"]
    needs_access = status == "NEEDS_ACCESS"
    page, todo = access(result) if needs_access else (None, "")
    return {
        "status": status,
        "source": result.get("source", "scan"),
        "url": page if needs_access else result.get("url"),
        "evidence": result.get("evidence", "none"),
        "reason": todo if needs_access else result.get("reason", ""),
        "candidates": [{k: c.get(k) for k in CANDIDATE_FIELDS} for c in result.get("candidates", [])],
        "size": result.get("size"),
    }


def is_gated(result: Mapping[str, Any]) -> bool:
    """Return True when the result's source says a token is needed to download it (a gated repository)."""
    details = result.get("details") or {}
    return bool(details.get("gated") or (details.get("huggingface") or {}).get("gated"))


@dataclass
class Answers:
    """The search's answers for the report: projections by key, the gated files, and the search's facts."""

    results: dict[Key, dict[str, Any]] = field(default_factory=dict)
    gated: frozenset[Key] = frozenset()
    uncertain: int = 0
    offline: bool = False
    model_list: str | None = None
    _digests: dict[Key, bytes] = field(default_factory=dict, repr=False)

    def get(self, found: Key) -> Mapping[str, Any] | None:
        """Return the answer kept under ``found``, or None."""
        return self.results.get(found)

    def digest(self, found: Key) -> bytes:
        """Return a short digest of what the report shows of the answer under ``found`` (and whether its
        download needs a token), the same in every cycle the answer is the same."""
        return self._digests.get(found, _NO_DIGEST)


def from_results(results: Iterable[Mapping[str, Any]], offline: bool = False, model_list: str | None = None) -> Answers:
    """Return the Answers of search results (search.json's ``results``). Equal answers are kept once (offline,
    thousands of files share one NOT_SEARCHED answer), so what is kept grows with the distinct answers."""
    answers = Answers(offline=offline, model_list=model_list)
    shared: dict[bytes, tuple[dict[str, Any], bytes]] = {}
    gated = set()
    for result in results:
        found = key(result["type"], result["name"])
        answer = project(result)
        text = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)
        known = shared.get(text)
        if known is None:
            known = shared[text] = (answer, hashlib.blake2b(text, digest_size=12).digest())
        answers.results[found] = known[0]
        answers.uncertain += result["status"] == "UNCERTAIN"
        if is_gated(result):
            gated.add(found)
            answers._digests[found] = known[1] + b"g"
        else:
            answers._digests[found] = known[1]
    answers.gated = frozenset(gated)
    return answers


@cache
def schema_definitions(schema_name: str) -> frozenset[str]:
    """Return the names under ``$defs`` of the schema ``schema_name``."""
    text = (resources.SCHEMAS_DIR / f"{schema_name}.schema.json").read_bytes()
    return frozenset(orjson.loads(text).get("$defs", {}))


def _results(path: Path) -> tuple[dict[str, Any], Iterator[Any]]:
    """Return search.json's head and its results one at a time (a line each when it is written that way and
    its schema states a result's definition; else read whole)."""
    if "result" in schema_definitions("search"):
        document = artifacts.Assembled(path, "results", "search", "result")
        return document.head, document.items()
    whole = artifacts.read(path, "search")
    return whole, iter(whole.pop("results"))


def load(path: Path) -> Answers:
    """Return the Answers of the search.json at ``path``; raise ArtifactError naming it when it is missing
    or broken."""
    head, results = _results(path)
    return from_results(results, bool(head["offline"]), head.get("model_list"))
