"""Gate: decide whether this cycle runs now, and record the verdict and reason in ``state/gate.json``.

The checks, in order: the machine is awake (not just resumed or booted), the GPU has enough free VRAM,
ComfyUI is not busy (its ``/queue`` is empty), and this cycle holds the lock. Each check is a function of its
inputs (config, the clock reading, the NVML probe, an HTTP fetch), so every branch is testable without a GPU,
a ComfyUI server or a suspend. The cycle lock is taken by the runner before the gate, so two cycles never
overlap whatever the verdict; a skip exits 75.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, NamedTuple

from comfywatchman import artifacts, awake, catalogue, gpu, humanize
from comfywatchman.comfy import server
from comfywatchman.lock import CycleLock
from comfywatchman.stages.context import FetchJson, StageContext, StageOutcome

logger = logging.getLogger(__name__)

# The checks a manual --force run skips; the lock is never among them.
FORCED_OFF = ("awake", "vram", "comfyui_busy")
_CANNOT_TELL = "cannot tell whether ComfyUI is busy"

Fetch = FetchJson  # see stages.context


# A NamedTuple, not a frozen dataclass: a cycle's process makes this class, and a dataclass costs it ~0.4 ms to
# make (Python 3.11), a NamedTuple a tenth of that.
class Check(NamedTuple):
    """One gate check: its name, whether it lets the cycle run, and why."""

    name: str
    ok: bool
    detail: str


def check_awake(schedule: Mapping[str, Any], reading: awake.ClockReading, observation: awake.Observation) -> Check:
    """Return the awake check: awake for ``wake_grace_seconds`` since the machine last resumed or booted?

    Passes, saying so, where the platform cannot tell time spent suspended.
    """
    grace = float(schedule["wake_grace_seconds"])
    if reading.suspended_s is None:
        return Check("awake", True, f"cannot tell time spent suspended on {reading.platform}; assuming awake")
    since = awake.awake_for(reading, observation)
    if since is None:
        return Check("awake", True, "no resume or boot recorded; assuming awake")
    what = "booted" if observation.resumed_at_awake_s == 0.0 else "resumed from suspend"
    slept = f" after {humanize.duration(observation.slept_s)} suspended" if observation.slept_s > 0 else ""
    if since < grace:
        return Check(
            "awake",
            False,
            f"the machine {what}{slept} {since:.0f} s ago; waiting until it has been awake {grace:g} s "
            "([schedule] wake_grace_seconds)",
        )
    return Check("awake", True, f"awake for {humanize.duration(since)} since it last {what}")


def check_vram(schedule: Mapping[str, Any], probe: gpu.GpuProbe) -> Check:
    """Return the VRAM check: enough free memory on the configured GPU (or the best one)?

    Without NVML or an NVIDIA GPU the check passes and says so, unless ``require_gpu`` is set. NVML errors
    are a reason in words, never a traceback.
    """
    minimum = float(schedule["min_vram_gb"])
    if not probe.available:
        if schedule["require_gpu"]:
            return Check("vram", False, f"{probe.reason}, and [schedule] require_gpu = true")
        return Check("vram", True, f"{probe.reason}; running without a VRAM check")
    index = int(schedule["gpu_index"])
    if index >= 0:
        if index in probe.errors:
            return Check("vram", False, f"GPU {index} named by [schedule] gpu_index: NVML error: {probe.errors[index]}")
        chosen = next((g for g in probe.gpus if g.index == index), None)
        if chosen is None:
            found = len(probe.gpus) + len(probe.errors)
            return Check("vram", False, f"GPU {index} named by [schedule] gpu_index does not exist ({found} found)")
    else:
        chosen = max(probe.gpus, key=lambda g: g.free_gb)
    detail = (
        f"GPU {chosen.index} ({chosen.name}): {chosen.free_gb:.1f} GiB free of {chosen.total_gb:.1f}, need {minimum:g}"
    )
    if chosen.free_gb < minimum:
        return Check("vram", False, f"{detail}; another job is using the GPU")
    return Check("vram", True, detail)


def check_comfyui_queue(schedule: Mapping[str, Any], url: str, fetch: Fetch, *, offline: bool = False) -> Check:
    """Return the ComfyUI-busy check: does the server at ``url`` have running or pending prompts?

    Passes when the check is off, no URL is set, the server does not answer (it is not running, so it is not
    busy), or it answers something else than a queue (say so); --offline checks only a server on this machine.
    """
    if not schedule["check_comfyui_queue"]:
        return Check("comfyui_busy", True, "not checked ([schedule] check_comfyui_queue = false)")
    if not url:
        return Check("comfyui_busy", True, "not checked: no [comfyui] url")
    if offline and not server.is_loopback(url):
        return Check("comfyui_busy", True, f"not checked: --offline and {url} is not on this machine")
    endpoint = url.rstrip("/") + "/queue"
    try:
        body = fetch(endpoint, float(schedule["comfyui_timeout_seconds"]))
    except ValueError:
        return Check("comfyui_busy", True, f"{endpoint} did not answer JSON; {_CANNOT_TELL}")
    except OSError as exc:
        # Loaded here: urllib.error brings urllib.response and tempfile, which a cycle that asks no server never
        # needs (a fetch that raised one has loaded it already).
        import urllib.error

        if isinstance(exc, urllib.error.HTTPError):
            return Check("comfyui_busy", True, f"{endpoint} answered HTTP {exc.code}; {_CANNOT_TELL}")
        return Check("comfyui_busy", True, f"ComfyUI at {url} does not answer ({_reason(exc)}); not busy")
    keys = ("queue_running", "queue_pending")
    if not isinstance(body, dict) or not all(isinstance(body.get(k), list) for k in keys):
        return Check("comfyui_busy", True, f"{endpoint} did not answer a queue; {_CANNOT_TELL}")
    running, pending = len(body["queue_running"]), len(body["queue_pending"])
    if running or pending:
        return Check("comfyui_busy", False, f"ComfyUI at {url} is busy: {running} running, {pending} pending prompt(s)")
    return Check("comfyui_busy", True, f"ComfyUI at {url} is idle")


def check_lock(lock: CycleLock | None) -> Check:
    """Return the lock check: does this process hold the cycle lock? (The runner takes it before the gate.)"""
    if lock is None:
        return Check("lock", True, "held by the runner")
    if not lock.held:
        return Check("lock", False, f"{lock.path} is not held by this process")
    took_over = f"; took over from pid {lock.took_over_from}, which had died" if lock.took_over_from else ""
    return Check("lock", True, f"held by pid {os.getpid()}{took_over}")


def decide(checks: list[Check]) -> tuple[str, str]:
    """Return ``("run" | "skip", reason)`` from the checks: the first failing check's detail decides."""
    for check in checks:
        if not check.ok:
            return "skip", f"{check.name}: {check.detail}"
    return "run", "; ".join(f"{c.name}: {c.detail}" for c in checks) or "no checks"


def run(ctx: StageContext) -> StageOutcome:
    """Run the gate checks, write ``gate.json`` and return the outcome (``skipped_reason`` set on skip).

    The machine's clocks, NVML and the HTTP GET for ComfyUI's ``/queue`` come from ``ctx.machine``.
    ``ctx.force`` (a manual run) skips the awake, VRAM and ComfyUI checks but never the lock
    (``ctx.lock``), which the runner holds already.
    """
    now = ctx.now()
    outcome = StageOutcome("gate")
    schedule = ctx.config.section("schedule")
    # The clocks are read even on --force, so the next run compares with a fresh reading.
    reading, observation = ctx.awake_tracker().observe(now)
    if ctx.force:
        probe = gpu.GpuProbe(False, "not probed: --force (manual run)")
        checks = [Check(name, True, "skipped: --force (manual run)") for name in FORCED_OFF]
    else:
        probe = gpu.probe(ctx.machine.load_nvml())
        checks = [
            check_awake(schedule, reading, observation),
            check_vram(schedule, probe),
            check_comfyui_queue(
                schedule, ctx.config.section("comfyui")["url"], ctx.machine.fetch_json, offline=ctx.config.offline
            ),
        ]
    checks.append(check_lock(ctx.lock))
    verdict, reason = decide(checks)
    document = {
        "cycle_id": ctx.cycle_id,
        "decided_at": now.isoformat(timespec="seconds"),
        "verdict": verdict,
        "reason": reason,
        "forced": ctx.force,
        "checks": [c._asdict() for c in checks],
        "gpu": probe.to_json(),
    }
    artifacts.write(catalogue.path(ctx.config, "gate"), document, catalogue.schema("gate"))
    if verdict == "skip":
        outcome.skipped_reason = reason
        logger.info("gate: skipping this cycle: %s", reason)
    else:
        logger.info("gate: running: %s", reason)
    outcome.detail = reason
    return outcome


def _reason(exc: OSError) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc.strerror or exc or type(exc).__name__)
