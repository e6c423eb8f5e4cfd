"""Shared fixtures: temporary ComfyUI trees on disk and the real CLI in a subprocess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.comfy_tree import ComfyTree


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "real_machine: the test reads this machine's own clocks or NVML on purpose")


class MachineReadInTest(AssertionError):
    """A test reached this machine's clocks or GPU instead of the fake it should have given."""


@pytest.fixture(autouse=True)
def machine_off_limits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make reading this machine's suspend clocks or NVML fail the test: every test gives its own
    (``tests.fakes.machine``), so a machine booted a minute ago or a busy GPU changes no result.
    Tests of the readers themselves carry the ``real_machine`` mark."""
    if request.node.get_closest_marker("real_machine"):
        return
    from comfywatchman import awake, gpu

    def refuse(what: str) -> Any:
        def reader(*args: Any, **kwargs: Any) -> Any:
            raise MachineReadInTest(f"the test read this machine's {what}; give the code a Machine from the test")

        return reader

    monkeypatch.setattr(awake, "read_clocks", refuse("suspend clocks (CLOCK_MONOTONIC/BOOTTIME)"))
    monkeypatch.setattr(gpu, "load_nvml", refuse("NVML"))


@pytest.fixture
def comfy_tree(tmp_path: Path) -> ComfyTree:
    """Return an empty ComfyUI install under ``tmp_path/ComfyUI`` to fill per test."""
    return ComfyTree(tmp_path / "ComfyUI")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """Return an empty comfywatchman home folder (state/, output/, log/ go there)."""
    path = tmp_path / "home"
    path.mkdir()
    return path
