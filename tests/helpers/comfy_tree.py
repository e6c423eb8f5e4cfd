"""Build small, realistic ComfyUI installs on disk for tests, and run the real CLI against them."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ComfyTree:
    """A ComfyUI install folder with helpers to add models, packs and workflows."""

    root: Path

    def __post_init__(self) -> None:
        (self.root / "models").mkdir(parents=True, exist_ok=True)
        (self.root / "custom_nodes").mkdir(exist_ok=True)
        self.workflows.mkdir(parents=True, exist_ok=True)

    @property
    def workflows(self) -> Path:
        return self.root / "user" / "default" / "workflows"

    def model(self, folder: str, name: str, size: int = 0) -> Path:
        """Create a model file at ``models/<folder>/<name>``; return its path. ``size`` zero bytes, except that
        a ``.safetensors`` file of size 0 gets the smallest whole header (as a real file has one)."""
        path = self.root / "models" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        whole = size == 0 and name.lower().endswith((".safetensors", ".sft"))
        path.write_bytes(EMPTY_SAFETENSORS if whole else b"\0" * size)
        return path

    def pack(self, folder: str, node_types: list[str], version: str | None = None) -> Path:
        """Create a custom node pack registering ``node_types`` in a NODE_CLASS_MAPPINGS literal."""
        path = self.root / "custom_nodes" / folder
        path.mkdir(parents=True, exist_ok=True)
        entries = ", ".join(f'"{t}": object' for t in node_types)
        (path / "__init__.py").write_text(f"NODE_CLASS_MAPPINGS = {{{entries}}}\n", encoding="utf-8")
        if version:
            (path / "pyproject.toml").write_text(f'[project]\nname = "{folder.lower()}"\nversion = "{version}"\n')
        return path

    def workflow(self, name: str, data: Any) -> Path:
        """Write ``data`` as JSON to ``user/default/workflows/<name>``; return its path."""
        path = self.workflows / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        return path

    def raw_workflow(self, name: str, content: bytes) -> Path:
        """Write ``content`` as is (for broken files); return its path."""
        path = self.workflows / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path


def ui_node(node_id: int, node_type: str, widgets: Any, mode: int = 0, **extra: Any) -> dict[str, Any]:
    """Return a UI-format node as the frontend saves it."""
    return {
        "id": node_id,
        "type": node_type,
        "pos": [100 * node_id, 100],
        "size": [315, 98],
        "flags": {},
        "order": node_id,
        "mode": mode,
        "inputs": [],
        "outputs": [],
        "properties": {"Node name for S&R": node_type, **extra.pop("properties", {})},
        "widgets_values": widgets,
        **extra,
    }


def ui_workflow(nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Return a UI-format (0.4) workflow holding ``nodes``."""
    return {
        "last_node_id": max((n["id"] for n in nodes), default=0),
        "last_link_id": 0,
        "nodes": nodes,
        "links": [],
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 1, "offset": [0, 0]}},
        "version": 0.4,
        **extra,
    }


# An 8-byte little-endian header length (2) and the header "{}": the smallest whole safetensors file.
EMPTY_SAFETENSORS = struct.pack("<Q", 2) + b"{}"

# The GPU every command under test sees: a busy one (tests/fakes/busy_gpu), never this machine's.
FAKE_GPU = REPO / "tests" / "fakes" / "busy_gpu"


def subprocess_env(home: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment for the real command in a subprocess: this one without the user's settings
    and secrets, with the fake busy GPU first on PYTHONPATH (so NVML is the test's), ``home`` as the home and
    the user folders under it, plus ``env``.

    The machine's other inputs are settled by the command line: ``--force`` (a manual run) skips the awake,
    VRAM and ComfyUI checks, the default config has no ComfyUI URL, and ``--offline`` or the test's own
    local servers are all the network a cycle sees.
    """
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("COMFYUI_", "COMFYWATCHMAN_", "CIVITAI_", "HF_"))
    }
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAKE_GPU), os.environ.get("PYTHONPATH", "")) if p)
    # ``home`` is the home, as the checkout's make targets make theirs; the user folders (data, the default
    # secrets file, a saved Hub token) are the test's, never the machine's.
    user = home / ".user"
    environment.update(
        COMFYWATCHMAN_HOME=str(home),
        XDG_DATA_HOME=str(user / "data"),
        XDG_CONFIG_HOME=str(user / "config"),
        HF_HOME=str(user / "hf"),
    )
    environment.update(env or {})
    return environment


def run_cli(
    *args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``comfywatchman`` command in a subprocess with ``home`` as working folder (environment:
    ``subprocess_env``)."""
    environment = subprocess_env(home, env)
    return subprocess.run(
        [sys.executable, "-m", "comfywatchman", *args],
        cwd=home,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
