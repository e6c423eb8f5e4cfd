"""Gate: decide whether this cycle runs now, and record the verdict and reason in ``state/gate.json``.

Each check is a function of its inputs (config, the NVML probe), so every branch is testable without a GPU.
The cycle lock is taken by the runner before the gate, so two cycles never overlap whatever the verdict.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from comfywatchman import artifacts, gpu
from comfywatchman.stages.context import StageContext, StageOutcome

logger = logging.getLogger(__name__)

ARTIFACT = "gate.json"


@dataclass(frozen=True)
class Check:
    """One gate check: its name, whether it lets the cycle run, and why."""

    name: str
    ok: bool
    detail: str


def check_vram(schedule: dict[str, Any], probe: gpu.GpuProbe) -> Check:
    """Return the VRAM check: enough free memory on the configured GPU (or the best one)?

    Without NVML or an NVIDIA GPU the check passes and says so, unless ``require_gpu`` is set.
    """
    minimum = float(schedule["min_vram_gb"])
    if not probe.available:
        if schedule["require_gpu"]:
            return Check("vram", False, f"{probe.reason}, and [schedule] require_gpu = true")
        return Check("vram", True, f"{probe.reason}; running without a VRAM check")
    index = int(schedule["gpu_index"])
    if index >= 0:
        chosen = next((g for g in probe.gpus if g.index == index), None)
        if chosen is None:
            return Check("vram", False, f"GPU {index} named by [schedule] gpu_index does not exist ({len(probe.gpus)} found)")
    else:
        chosen = max(probe.gpus, key=lambda g: g.free_gb)
    detail = f"GPU {chosen.index} ({chosen.name}): {chosen.free_gb:.1f} GiB free of {chosen.total_gb:.1f}, need {minimum:g}"
    if chosen.free_gb < minimum:
        return Check("vram", False, f"{detail}; another job is using the GPU")
    return Check("vram", True, detail)


def decide(checks: list[Check]) -> tuple[str, str]:
    """Return ``("run" | "skip", reason)`` from the checks: the first failing check's detail decides."""
    for check in checks:
        if not check.ok:
            return "skip", f"{check.name}: {check.detail}"
    return "run", "; ".join(f"{c.name}: {c.detail}" for c in checks) or "no checks"


def run(ctx: StageContext, *, nvml: Any = None, force: bool = False) -> StageOutcome:
    """Run the gate checks, write ``gate.json`` and return the outcome (``skipped_reason`` set on skip).

    ``nvml`` is the pynvml module or a double; None loads the real one. ``force`` (a manual run) skips the
    VRAM check but never the lock, which the runner holds already.
    """
    now = ctx.now()
    outcome = StageOutcome("gate")
    schedule = ctx.config.section("schedule")
    probe = gpu.probe(nvml if nvml is not None else gpu.load_nvml())
    if force:
        checks = [Check("vram", True, "skipped: --force (manual run)")]
    else:
        checks = [check_vram(schedule, probe)]
    verdict, reason = decide(checks)
    document = {
        "cycle_id": ctx.cycle_id,
        "decided_at": now.isoformat(timespec="seconds"),
        "verdict": verdict,
        "reason": reason,
        "forced": force,
        "checks": [asdict(c) for c in checks],
        "gpu": probe.to_json(),
    }
    artifacts.write(ctx.state_dir / ARTIFACT, document, "gate")
    if verdict == "skip":
        outcome.skipped_reason = reason
        logger.info("gate: skipping this cycle: %s", reason)
    else:
        logger.info("gate: running: %s", reason)
    outcome.detail = reason
    return outcome
