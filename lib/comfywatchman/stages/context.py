"""What every stage is given (config, clock, cycle id, structured log) and what it gives back."""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from comfywatchman.config import Config
from comfywatchman.telemetry import StructuredLog


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC (the default clock)."""
    return datetime.now(timezone.utc)


def new_cycle_id(now: datetime) -> str:
    """Return a fresh, sortable cycle id such as ``20261124T213200Z-3fa2``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{_secrets.token_hex(2)}"


@dataclass
class StageContext:
    """The inputs every stage's ``run`` takes. ``clock`` is a parameter so time-based logic is testable."""

    config: Config
    cycle_id: str
    clock: Callable[[], datetime] = utcnow
    log: StructuredLog | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = StructuredLog(self.config.log_dir / "structured.log", self.cycle_id)

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def now(self) -> datetime:
        """Return the current time from the context's clock."""
        return self.clock()


@dataclass
class StageOutcome:
    """What a stage did: success, one-line errors (each naming its file), counts for metrics and the log."""

    stage: str
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped_reason: str | None = None
    detail: str = ""

    def fail(self, message: str) -> None:
        """Record a problem; the stage still finishes what it can."""
        self.ok = False
        self.errors.append(message)
