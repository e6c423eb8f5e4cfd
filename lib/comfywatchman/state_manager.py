"""Cycle state and telemetry: ``state/runs/<stage>.json``, ``state/cycles.jsonl``, ``scheduler.json``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from comfywatchman import artifacts, catalogue
from comfywatchman.errors import ArtifactError
from comfywatchman.stages.context import StageOutcome

logger = logging.getLogger(__name__)


class StateManager:
    """Reads and writes the state files that describe cycles (not the stage artifacts themselves)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def cycles_path(self) -> Path:
        return catalogue.in_state(self.state_dir, "cycles")

    @property
    def scheduler_path(self) -> Path:
        return catalogue.in_state(self.state_dir, "scheduler")

    def run_path(self, stage: str) -> Path:
        """Return the path of the record of ``stage``'s latest run."""
        return catalogue.in_state(self.state_dir, "stage_run", stage)

    def record_stage(
        self, cycle_id: str, outcome: StageOutcome, started: datetime, finished: datetime
    ) -> dict[str, Any]:
        """Write and return the record of one stage run."""
        record = {
            "stage": outcome.stage,
            "cycle_id": cycle_id,
            "started_at": started.isoformat(timespec="milliseconds"),
            "finished_at": finished.isoformat(timespec="milliseconds"),
            "duration_s": round((finished - started).total_seconds(), 3),
            "ok": outcome.ok,
            "skipped_reason": outcome.skipped_reason,
            "errors": outcome.errors,
            "findings": outcome.findings,
            "counts": outcome.counts,
            "detail": outcome.detail,
        }
        # Not flushed to disk (``durable=False``): a record of how the run went, read back checked (a broken one
        # is logged and skipped, see ``stage_runs``), while cycles.jsonl keeps the cycle's own record, flushed.
        # Its rename already waited for the cycle's end (``deferred_syncs``); the fsync of each stage's record
        # was a disk flush per stage, some 5 ms each, a tenth of a quiet cycle.
        artifacts.write(self.run_path(outcome.stage), record, catalogue.schema("stage_run"), durable=False)
        return record

    def stage_runs(self, cycle_id: str) -> list[dict[str, Any]]:
        """Return the stage run records that belong to ``cycle_id``, in stage order."""
        from comfywatchman.stages import ORDER

        runs = []
        for stage in ORDER:
            try:
                record = artifacts.read_optional(self.run_path(stage), catalogue.schema("stage_run"))
            except ArtifactError as exc:
                logger.warning("%s", exc)
                continue
            if record is not None and record["cycle_id"] == cycle_id:
                runs.append(record)
        return runs

    def record_cycle(self, record: dict[str, Any]) -> None:
        """Append one cycle record ``{id, started_at, duration_s, success, skipped_reason, counts, ...}``."""
        artifacts.append_jsonl(self.cycles_path, [record], catalogue.schema("cycles"))

    def cycles(self) -> Iterator[dict[str, Any]]:
        """Yield every recorded cycle, oldest first."""
        return artifacts.read_jsonl(self.cycles_path, catalogue.schema("cycles"))

    def read_scheduler(self) -> dict[str, Any] | None:
        """Return ``scheduler.json`` (None when absent; a broken one is logged and treated as absent)."""
        try:
            return artifacts.read_optional(self.scheduler_path, catalogue.schema("scheduler"))
        except ArtifactError as exc:
            logger.warning("%s; starting from no recorded schedule", exc)
            return None

    def write_scheduler(self, document: dict[str, Any]) -> None:
        """Validate and write ``scheduler.json`` atomically."""
        artifacts.write(self.scheduler_path, document, catalogue.schema("scheduler"))

    def scheduler_document(self) -> dict[str, Any]:
        """Return ``scheduler.json`` with every required field present (null when it was never recorded)."""
        return {
            "next_run_at": None,
            "last_run_at": None,
            "last_outcome": None,
            "last_skip_reason": None,
            "pid": None,
            **(self.read_scheduler() or {}),
        }

    def update_scheduler(self, now: datetime, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into ``scheduler.json`` (created with nulls when absent), stamp ``updated_at``,
        write it atomically and return it."""
        document: dict[str, Any] = {
            **self.scheduler_document(),
            **fields,
            "updated_at": now.isoformat(timespec="seconds"),
        }
        self.write_scheduler(document)
        return document

    def record_outcome(
        self,
        now: datetime,
        outcome: str,
        skip_reason: str | None,
        interval_minutes: float,
        retry_minutes: float,
        pid: int,
        *,
        cycle_id: str | None = None,
        exit_code: int | None = None,
        trigger: str | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Update ``scheduler.json`` after a cycle and return it: the next run one interval on, or
        ``retry_minutes`` on after a skip (a failure waits the full interval: its cause rarely goes away
        in minutes, and its errors are retried by the next cycle anyway)."""
        retry = outcome == "skipped"
        delay = retry_minutes if retry else interval_minutes
        return self.update_scheduler(
            now,
            last_run_at=now.isoformat(timespec="seconds"),
            last_outcome=outcome,
            last_skip_reason=skip_reason,
            last_error=error,
            last_cycle_id=cycle_id,
            last_exit_code=exit_code,
            last_trigger=trigger,
            next_run_at=(now + timedelta(minutes=delay)).isoformat(timespec="seconds"),
            next_run_reason="retry" if retry else "interval",
            pid=pid,
        )
