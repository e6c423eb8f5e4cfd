"""Free VRAM through NVML (pynvml, from the nvidia-ml-py package), with NVML injectable for tests."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

GIB = 1024**3
# The shared library pynvml loads outside Windows (it is the NVIDIA driver's), and pynvml's words when it cannot.
NVML_LIBRARY = "libnvidia-ml.so.1"
LIBRARY_NOT_FOUND = "NVML Shared Library Not Found"


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as NVML reports it."""

    index: int
    name: str
    free_gb: float
    total_gb: float


@dataclass(frozen=True)
class GpuProbe:
    """What NVML said: ``available`` False with ``reason`` when there is no NVML or no NVIDIA GPU.

    ``errors`` maps the index of each GPU NVML could not read (fallen off the bus, lost) to the error, so one
    broken GPU does not hide the others.
    """

    available: bool
    reason: str
    gpus: list[GpuInfo] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the probe as the JSON object gate.json stores."""
        return {
            "available": self.available,
            "reason": self.reason,
            "gpus": [asdict(g) for g in self.gpus],
            "errors": [{"index": i, "error": e} for i, e in sorted(self.errors.items())],
        }


@dataclass(frozen=True)
class MissingLibrary:
    """Stands for pynvml on a machine without the NVIDIA driver's NVML library: ``probe`` says so in pynvml's
    own words, and pynvml (8,000 lines of ctypes declarations, some 15 ms of every cycle) is never imported."""

    reason: str = LIBRARY_NOT_FOUND


def _open_library(name: str) -> None:
    """Load the shared library ``name`` as pynvml would (raises OSError when it cannot be loaded)."""
    import ctypes  # here, not at the top: only a cycle's gate needs it

    ctypes.CDLL(name)


def load_nvml(open_library: Callable[[str], object] = _open_library) -> Any | None:
    """Return the pynvml module; a ``MissingLibrary`` when the NVIDIA driver's NVML library cannot be loaded
    here (without a driver, installing nvidia-ml-py would change nothing, so that is the reason given); None
    when nvidia-ml-py is not installed. Outside Windows pynvml loads the library by this one name, the test
    made here; on Windows it looks in two folders, and is left to do so."""
    if not sys.platform.startswith("win"):
        try:
            open_library(NVML_LIBRARY)
        except OSError:
            return MissingLibrary()
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
    if isinstance(nvml, MissingLibrary):
        return GpuProbe(False, f"NVML could not start: {nvml.reason} (no NVIDIA driver?)")
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
