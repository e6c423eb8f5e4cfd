"""The NVML probe with a fake NVML: every failure becomes a reason, never a traceback."""

from __future__ import annotations

from comfywatchman import gpu
from tests.fakes.machine import FakeNvml, NVMLError


def test_probe_lists_every_gpu_with_free_memory_when_nvml_answers() -> None:
    nvml = FakeNvml.with_free(3.5, 20.0, name=b"NVIDIA RTX A6000")
    probe = gpu.probe(nvml)
    assert probe.available
    assert [(g.index, g.name, g.free_gb, g.total_gb) for g in probe.gpus] == [
        (0, "NVIDIA RTX A6000", 3.5, 24.0),
        (1, "NVIDIA RTX A6000", 20.0, 24.0),
    ]
    assert nvml.shutdowns == 1


def test_probe_says_why_when_nvml_is_not_installed() -> None:
    probe = gpu.probe(None)
    assert not probe.available and "nvidia-ml-py" in probe.reason


def test_probe_says_why_when_nvml_cannot_start() -> None:
    probe = gpu.probe(FakeNvml(init_error=NVMLError("Driver Not Loaded")))
    assert not probe.available and "Driver Not Loaded" in probe.reason


def test_probe_says_why_when_counting_gpus_fails() -> None:
    nvml = FakeNvml(count_error=NVMLError("Unknown Error"))
    probe = gpu.probe(nvml)
    assert not probe.available and probe.reason == "NVML error: Unknown Error"
    assert nvml.shutdowns == 1


def test_probe_keeps_the_readable_gpus_when_one_fell_off_the_bus() -> None:
    nvml = FakeNvml([NVMLError("GPU is lost"), ("NVIDIA L4", 10 * FakeNvml.GIB, 24 * FakeNvml.GIB)])
    probe = gpu.probe(nvml)
    assert probe.available and [g.index for g in probe.gpus] == [1]
    assert probe.errors == {0: "GPU is lost"}
    assert probe.to_json()["errors"] == [{"index": 0, "error": "GPU is lost"}]


def test_probe_is_unavailable_when_every_gpu_errors() -> None:
    probe = gpu.probe(FakeNvml([NVMLError("GPU is lost")]))
    assert not probe.available and "GPU is lost" in probe.reason


def test_probe_is_unavailable_when_there_is_no_gpu() -> None:
    assert gpu.probe(FakeNvml([])).reason == "NVML found no NVIDIA GPU"


def test_probe_ignores_a_failing_shutdown() -> None:
    assert gpu.probe(FakeNvml([("x", 1, 2)], shutdown_error=NVMLError("x"))).available


def test_probe_names_the_exception_type_when_nvml_says_nothing() -> None:
    assert gpu.probe(FakeNvml(init_error=NVMLError(""))).reason.startswith("NVML could not start: NVMLError")
