"""A stand-in for the ``pynvml`` module (nvidia-ml-py) for the real CLI in a subprocess: one NVIDIA GPU whose
memory another job holds (0.25 GiB free of 24).

End-to-end tests put this folder first on ``PYTHONPATH`` (see ``tests.helpers.comfy_tree.subprocess_env``),
so the command under test imports it instead of the real NVML: the GPU is the test's, not the machine's, and
a test that depends on the GPU by mistake fails everywhere alike (the gate skips with 75) instead of only on
a machine whose GPU happens to be busy. The calls and results are those of pynvml that the gate uses.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3
NAME = "Fake busy GPU (tests/fakes/busy_gpu)"
FREE = GIB // 4
TOTAL = 24 * GIB


class NVMLError(Exception):
    """Like pynvml.NVMLError."""


class _Memory:
    def __init__(self) -> None:
        self.free = FREE
        self.total = TOTAL
        self.used = TOTAL - FREE


def nvmlInit() -> None:
    """Start NVML (nothing to do)."""


def nvmlShutdown() -> None:
    """Stop NVML (nothing to do)."""


def nvmlDeviceGetCount() -> int:
    """Return the number of GPUs: one."""
    return 1


def nvmlDeviceGetHandleByIndex(index: int) -> Any:
    """Return the handle of GPU ``index``; raise NVMLError for any other than 0, as NVML does."""
    if index != 0:
        raise NVMLError("Invalid Argument")
    return 0


def nvmlDeviceGetMemoryInfo(handle: Any) -> Any:
    """Return the memory of the GPU: 0.25 GiB free of 24."""
    return _Memory()


def nvmlDeviceGetName(handle: Any) -> str:
    """Return the GPU's name."""
    return NAME
