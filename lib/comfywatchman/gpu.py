"""Free VRAM through NVML (pynvml, from the nvidia-ml-py package), with NVML injectable for tests."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

GIB = 1024**3


# Plain classes, not frozen dataclasses: every cycle's process makes these classes, and a frozen dataclass costs
# it ~0.4 ms to make (Python 3.11). Nothing assigns to one once made, and none is compared or hashed. (GpuInfo is
# no NamedTuple: its ``index`` would hide tuple.index.)
class GpuInfo:
    """One GPU as NVML reports it."""

    __slots__ = ("free_gb", "index", "name", "total_gb")

    index: int
    name: str
    free_gb: float
    total_gb: float

    def __init__(self, index: int, name: str, free_gb: float, total_gb: float) -> None:
        self.index, self.name, self.free_gb, self.total_gb = index, name, free_gb, total_gb

    def to_json(self) -> dict[str, Any]:
        """Return the GPU as gate.json stores it (what ``dataclasses.asdict`` gave)."""
        return {"index": self.index, "name": self.name, "free_gb": self.free_gb, "total_gb": self.total_gb}


class GpuProbe:
    """What NVML said: ``available`` False with ``reason`` when there is no NVML or no NVIDIA GPU.

    ``errors`` maps the index of each GPU NVML could not read (fallen off the bus, lost) to the error, so one
    broken GPU does not hide the others.
    """

    __slots__ = ("available", "errors", "gpus", "reason")

    available: bool
    reason: str
    gpus: list[GpuInfo]
    errors: dict[int, str]

    def __init__(
        self, available: bool, reason: str, gpus: list[GpuInfo] | None = None, errors: dict[int, str] | None = None
    ) -> None:
        self.available, self.reason = available, reason
        self.gpus = [] if gpus is None else gpus
        self.errors = {} if errors is None else errors

    def to_json(self) -> dict[str, Any]:
        """Return the probe as the JSON object gate.json stores."""
        return {
            "available": self.available,
            "reason": self.reason,
            "gpus": [g.to_json() for g in self.gpus],
            "errors": [{"index": i, "error": e} for i, e in sorted(self.errors.items())],
        }


def load_nvml() -> Any | None:
    """Return the pynvml module, or None when nvidia-ml-py is not installed."""
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def probe(nvml: Any | None) -> GpuProbe:
    """Return the GPUs ``nvml`` (the pynvml module or a double of it) reports, never raising.

    NVML errors (no driver, no device, a GPU fallen off the bus) become ``available=False`` with the reason.
    """
    if nvml is None:
        return GpuProbe(False, "NVML is not installed (pip package nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return GpuProbe(False, f"NVML could not start: {_nvml_message(exc)} (no NVIDIA driver?)")
    errors: dict[int, str] = {}
    try:
        count = nvml.nvmlDeviceGetCount()
        gpus = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                name = nvml.nvmlDeviceGetName(handle)
            except Exception as exc:  # one unreadable GPU (fallen off the bus) must not hide the others
                errors[index] = _nvml_message(exc)
                continue
            if isinstance(name, bytes):
                name = name.decode(errors="replace")
            gpus.append(GpuInfo(index, str(name), round(memory.free / GIB, 3), round(memory.total / GIB, 3)))
    except Exception as exc:
        return GpuProbe(False, f"NVML error: {_nvml_message(exc)}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception as exc:  # shutting down cannot change the verdict; note it for debugging only
            logger.debug("nvmlShutdown failed: %s", exc)
    if not gpus:
        if errors:
            first = min(errors)
            return GpuProbe(False, f"NVML error on every GPU (GPU {first}: {errors[first]})", [], errors)
        return GpuProbe(False, "NVML found no NVIDIA GPU")
    unreadable = f", {len(errors)} unreadable" if errors else ""
    return GpuProbe(True, f"{len(gpus)} NVIDIA GPU(s) found{unreadable}", gpus, errors)


def _nvml_message(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
