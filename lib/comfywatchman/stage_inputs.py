"""What a stage's outputs were computed from, so a cycle whose inputs did not change leaves them as they are.

A stage that reads large artifacts (search reads scan.json, the report reads scan.json and search.json)
records, after it wrote, a fingerprint of its inputs (the size and mtime of the artifacts it read: each is
rewritten only when its content changes, so its stat stands for its content; plus its settings), the stat of
each file it wrote, until when its answers hold (``valid_until``: the earliest expiry of a cached search
answer), and its counts. The next cycle compares: same fingerprint, outputs as written, not expired, and the
stage reuses its outputs without reading or rewriting anything large. Kept in ``state/<stage>_inputs.json``
(schema ``stage_inputs``); a cache: deleting it costs one full run of the stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from comfywatchman import artifacts
from comfywatchman.errors import ArtifactError

logger = logging.getLogger(__name__)

SCHEMA = "stage_inputs"


def stat_key(path: Path) -> list[int] | None:
    """Return ``[size, mtime_ns]`` of ``path``, or None when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def fingerprint(files: Iterable[Path], settings: Mapping[str, Any]) -> str:
    """Return a hash of the stats of ``files`` (a missing file counts as such) and of ``settings``."""
    return artifacts.content_hash({"files": {str(p): stat_key(p) for p in files}, "settings": dict(settings)})


def path_of(state_dir: Path, stage: str) -> Path:
    """Return the inputs file of ``stage``: ``state/<stage>_inputs.json``."""
    return state_dir / f"{stage}_inputs.json"


def previous(state_dir: Path, stage: str) -> Mapping[str, Any] | None:
    """Return the recorded inputs of ``stage`` whatever they say (None when none or unreadable)."""
    try:
        recorded: Mapping[str, Any] | None = artifacts.read_optional(path_of(state_dir, stage), SCHEMA)
    except ArtifactError:
        return None
    return recorded


def reusable(
    state_dir: Path, stage: str, wanted: str, outputs: Iterable[Path], now: datetime
) -> Mapping[str, Any] | None:
    """Return the recorded inputs of ``stage`` when its last outputs still stand (same fingerprint ``wanted``,
    every output as it was written, ``valid_until`` not reached at ``now``); else None."""
    try:
        recorded = artifacts.read_optional(path_of(state_dir, stage), SCHEMA)
    except ArtifactError as exc:
        logger.warning("%s; the %s stage runs in full", exc, stage)
        return None
    if recorded is None or recorded["fingerprint"] != wanted:
        return None
    if any(recorded["outputs"].get(str(p)) != stat_key(p) for p in outputs):
        return None
    until = recorded["valid_until"]
    if until is not None and datetime.fromisoformat(until) <= now:
        return None
    result: Mapping[str, Any] = recorded  # validated against stage_inputs.schema.json on reading
    return result


def record(
    state_dir: Path,
    stage: str,
    cycle_id: str,
    wanted: str,
    outputs: Iterable[Path],
    valid_until: datetime | None,
    counts: Mapping[str, int],
    detail: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write what ``stage`` computed its ``outputs`` from (call it after they are written); ``extra``: what the
    stage itself needs to reuse them."""
    document = {
        "cycle_id": cycle_id,
        "fingerprint": wanted,
        "outputs": {str(p): stat_key(p) for p in outputs},
        "valid_until": valid_until.isoformat() if valid_until is not None else None,
        "counts": dict(counts),
        "detail": detail,
        **({"extra": dict(extra)} if extra is not None else {}),
    }
    # Not flushed to disk (durable False): a cache (see the module). One a power cut left empty or torn is not
    # read (the stage runs in full), and an older one names neither these outputs nor this fingerprint.
    artifacts.write(path_of(state_dir, stage), document, SCHEMA, indent=None, durable=False)
