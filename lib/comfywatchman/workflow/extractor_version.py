"""The version of extraction (``workflow.extract``), on its own so that a cycle can compare it without
importing the extractor."""

from __future__ import annotations

# Bumped whenever extraction changes, so requirements kept from an earlier cycle are recomputed.
EXTRACTOR_VERSION = 4
