"""The bytes the requirement store keeps for one workflow's requirements (``RequirementStore`` payloads).

Apart from the store so that the scan's worker processes, which make these bytes, import neither the store's
file handling nor what it needs (temp files, hashing): each worker starts that much sooner.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(requirements: dict[str, Any]) -> bytes:
    """Return the payload kept for ``requirements``: compact JSON (orjson's, else the standard library's)."""
    try:
        return orjson.dumps(requirements)
    except TypeError:  # what orjson refuses (a lone surrogate, a huge integer) the standard library writes
        return json.dumps(requirements, separators=(",", ":"), check_circular=False).encode("ascii")
