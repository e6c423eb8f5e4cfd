"""What every stage is given (config, clock, cycle id, structured log, the machine) and what it gives back.

A stage gets everything it depends on through its StageContext, and nothing through keyword arguments,
options dictionaries or module globals: the clock, the machine's suspend clocks, NVML and the HTTP GET it
sends ComfyUI are parameters (a ``Machine``), so a test hands a stage a fake of each and nothing is read
from the machine the test runs on.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from comfywatchman import awake, gpu
from comfywatchman.comfy import server
from comfywatchman.config import Config
from comfywatchman.lock import CycleLock
from comfywatchman.telemetry import StructuredLog


def utcnow() -> datetime:
    """Return the current time, timezone-aware UTC (the default clock)."""
    return datetime.now(timezone.utc)


def new_cycle_id(now: datetime) -> str:
    """Return a fresh, sortable cycle id such as ``20261124T213200Z-3fa2``."""
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{_secrets.token_hex(2)}"


# fetch_json(url, timeout) -> parsed JSON. Raises urllib.error.HTTPError when the server answered with an error
# status, another OSError when it did not answer, ValueError when the body is not JSON.
FetchJson = Callable[[str, float], Any]


def _real_clocks() -> awake.ClockReading:
    # Looked up when called, not bound at import: the test suite replaces the real readers with ones that
    # refuse, so a test that forgot to give its own Machine fails instead of reading the machine it runs on.
    return awake.read_clocks()


def _real_nvml() -> Any:
    return gpu.load_nvml()


def _real_fetch_json(url: str, timeout: float) -> Any:
    return server.get_json(url, timeout)


# Machine a NamedTuple and StageContext a plain class, not dataclasses: every cycle's process makes these
# classes, and a dataclass costs it 0.2 to 0.4 ms to make (Python 3.11). StageOutcome stays a dataclass: its
# runs are recorded with dataclasses.asdict (side_by_side).
class Machine(NamedTuple):
    """What a cycle reads from the machine it runs on, each a parameter (defaults: the real ones).

    ``read_clocks``: the awake and suspended clocks (``awake.read_clocks``). ``load_nvml``: returns the pynvml
    module or a double, or None without NVML (``gpu.load_nvml``). ``fetch_json``: the HTTP GET the gate sends
    ComfyUI's ``/queue`` (``server.get_json``).
    """

    read_clocks: Callable[[], awake.ClockReading] = _real_clocks
    load_nvml: Callable[[], Any] = _real_nvml
    fetch_json: FetchJson = _real_fetch_json


class StageContext:
    """The one input every stage's ``run`` takes.

    ``clock`` and ``machine`` are parameters so time-, GPU- and network-based logic is testable. ``force``:
    a manual run that skips the gate's awake, VRAM and ComfyUI checks (never the lock). ``lock``: the cycle
    lock the runner holds. ``backends``: the search backends of this run (``--backends``), None for the
    configured order. ``auto_download``: ``--auto-download`` (trusted files are downloaded in the cycle, as
    ``[download] auto_download`` also asks); ``dry_run``: downloads only say what they would do.
    """

    __slots__ = (
        "auto_download", "backends", "clock", "config", "cycle_id", "dry_run", "force", "lock", "log", "machine",
    )  # fmt: skip

    config: Config
    cycle_id: str
    clock: Callable[[], datetime]
    log: StructuredLog | None
    machine: Machine
    force: bool
    lock: CycleLock | None
    backends: tuple[str, ...] | None
    auto_download: bool
    dry_run: bool

    def __init__(
        self,
        config: Config,
        cycle_id: str,
        clock: Callable[[], datetime] = utcnow,
        log: StructuredLog | None = None,
        machine: Machine | None = None,
        force: bool = False,
        lock: CycleLock | None = None,
        backends: tuple[str, ...] | None = None,
        auto_download: bool = False,
        dry_run: bool = False,
    ) -> None:
        self.config, self.cycle_id, self.clock = config, cycle_id, clock
        self.log = StructuredLog(config.log_dir / "structured.log", cycle_id) if log is None else log
        self.machine = Machine() if machine is None else machine
        self.force, self.lock, self.backends = force, lock, backends
        self.auto_download, self.dry_run = auto_download, dry_run

    @property
    def state_dir(self) -> Path:
        return self.config.state_dir

    def now(self) -> datetime:
        """Return the current time from the context's clock."""
        return self.clock()

    def awake_tracker(self) -> awake.AwakeTracker:
        """Return the tracker of ``state/awake.json`` that reads this context's machine clocks."""
        return awake.AwakeTracker(self.state_dir, reader=self.machine.read_clocks)


@dataclass
class StageOutcome:
    """What a stage did: success, one-line errors (each naming its file), counts for metrics and the log."""

    stage: str
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    #: Problems of one file each (a workflow that cannot be read) that do not fail the stage: it did its job for
    #: every other file. The report lists them; the cycle's exit code does not count them.
    findings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    skipped_reason: str | None = None
    detail: str = ""

    def fail(self, message: str) -> None:
        """Record a problem; the stage still finishes what it can."""
        self.ok = False
        self.errors.append(message)

    def finding(self, message: str) -> None:
        """Record a problem of one file (naming it) that leaves the stage's job done for every other file."""
        self.findings.append(message)
