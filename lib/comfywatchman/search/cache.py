"""The search cache: answers reused across cycles until they expire (``state/search_cache.json``).

FOUND and UNCERTAIN live ``search.cache_ttl_hours``; NOT_FOUND lives ``search.negative_ttl_hours`` (shorter:
a file may be uploaded tomorrow). ERROR, NOT_SEARCHED and INVALID_FILENAME are never stored: an error must be
retried next cycle, and the other two cost no request. The key holds the backends asked, so
``--backends huggingface`` does not reuse an answer that only Civitai gave.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError
from comfywatchman.search import names
from comfywatchman.search.base import ModelQuery, SearchResult, Status

if TYPE_CHECKING:
    from comfywatchman.config import Config

logger = logging.getLogger(__name__)

SCHEMA = "search_cache"
FILE_NAME = "search_cache.json"
VERSION = 1
POSITIVE = frozenset({Status.FOUND, Status.UNCERTAIN})


def cache_key(query: ModelQuery, backends: tuple[str, ...]) -> str:
    """Return the cache key of ``query`` asked of ``backends``: backends, folder, case-folded name, sha256."""
    name = names.normalise(query.name).casefold()
    return "|".join((",".join(backends), (query.folder or "").casefold(), name, query.known_sha256 or ""))


class SearchCache:
    """The cached answers of one state folder; ``get``/``put`` in memory, ``save`` writes atomically."""

    def __init__(self, path: Path, ttl_hours: float, negative_ttl_hours: float) -> None:
        self.path = path
        self.ttl = timedelta(hours=ttl_hours)
        self.negative_ttl = timedelta(hours=negative_ttl_hours)
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self.hits = 0
        self._load()

    @classmethod
    def from_config(cls, config: Config) -> SearchCache:
        """Return the cache in ``config.state_dir`` with the TTLs of ``[search]``."""
        search = config.section("search")
        return cls(
            Path(config.state_dir) / FILE_NAME, float(search["cache_ttl_hours"]), float(search["negative_ttl_hours"])
        )

    def _load(self) -> None:
        try:
            data = artifacts.read_optional(self.path, SCHEMA)
        except ArtifactError as exc:
            # A cache is disposable: a torn or outdated file costs a cycle of requests, never a failed cycle.
            logger.warning("%s; starting with an empty search cache", exc)
            data = None
        self.entries = dict(data["entries"]) if data else {}

    def get(self, query: ModelQuery, backends: tuple[str, ...], now: datetime) -> SearchResult | None:
        """Return the answer cached for ``query`` from ``backends`` if still fresh at ``now``, else None."""
        entry = self.entries.get(cache_key(query, backends))
        if entry is None or datetime.fromisoformat(entry["expires_at"]) <= now:
            return None
        self.hits += 1
        result = SearchResult.from_json(entry["result"])
        # The workflow's own spelling wins over the one cached under the same case-folded key.
        result.name, result.type = query.name, query.folder
        result.details["cache"] = {"stored_at": entry["stored_at"], "expires_at": entry["expires_at"]}
        return result

    def put(self, query: ModelQuery, backends: tuple[str, ...], result: SearchResult, now: datetime) -> bool:
        """Store ``result`` for ``query`` if its status is cacheable and TTL > 0; return whether it did."""
        if result.status in POSITIVE:
            ttl = self.ttl
        elif result.status in (Status.NOT_FOUND, Status.NEEDS_ACCESS):
            # Access can be granted any hour (early access ends, terms accepted): asked again as soon as
            # a NOT_FOUND would be.
            ttl = self.negative_ttl
        else:
            return False
        if ttl <= timedelta(0):
            return False
        self.entries[cache_key(query, backends)] = {
            "stored_at": now.isoformat(),
            "expires_at": (now + ttl).isoformat(),
            "backends": list(backends),
            "result": result.to_json(),
        }
        self.dirty = True
        return True

    def prune(self, now: datetime) -> int:
        """Drop every entry expired at ``now``; return how many were dropped."""
        expired = [k for k, e in self.entries.items() if datetime.fromisoformat(e["expires_at"]) <= now]
        for key in expired:
            del self.entries[key]
        self.dirty = self.dirty or bool(expired)
        return len(expired)

    def save(self, now: datetime | None = None) -> bool:
        """Write the cache atomically (expired entries dropped if ``now`` given); return whether it wrote."""
        if now is not None:
            self.prune(now)
        if not self.dirty:
            return False
        artifacts.write(self.path, {"version": VERSION, "entries": self.entries}, SCHEMA)
        self.dirty = False
        return True
