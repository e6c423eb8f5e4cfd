"""Secrets under every network fault: the real command, in a subprocess, with CIVITAI_API_KEY and HF_TOKEN set
and a Civitai, a Hub and a qwen CLI that misbehave in every way the network suite knows (refused, reset, read
timeouts, drips, 5xx storms, 429 with a huge Retry-After, redirect loops, huge and garbage bodies, tokens
echoed back in redirects). No token may appear in any file under the home, in stdout or stderr, or in an
exception's text; each cycle ends within its network deadline. ``make test`` runs one cycle that meets every
fault in turn; ``make test-reliability`` runs one cycle per fault and prints its figures."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman import artifacts
from tests.fakes import qwen_cli
from tests.fakes.civitai_server import FakeCivitai
from tests.fakes.hf_server import FakeHub
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow
from tests.reliability.test_network_faults import FAULTS

pytestmark = pytest.mark.slow

SECRETS = {"CIVITAI_API_KEY": "civ-SECRET-KEY-e2e-7731", "HF_TOKEN": "hf_SECRET_TOKEN_e2e_8842"}
DEADLINE = 2.0
NAMES = [
    ("LoraLoader", "add_detail.safetensors"),
    ("CheckpointLoaderSimple", "juggernaut_xl_v9_rundiffusion.safetensors"),
    ("LoraLoader", "old_style.safetensors"),
    ("UNETLoader", "wan2.1_t2v_14B_fp8_scaled.safetensors"),
    ("UNETLoader", "flux1-dev.safetensors"),
    ("CheckpointLoaderSimple", "zzqx_nothing_v2.safetensors"),
]


@pytest.fixture
def fakes() -> Iterator[tuple[FakeCivitai, FakeHub]]:
    with FakeCivitai() as civitai, FakeHub() as hub:
        yield civitai, hub


def _setup(comfy_tree: ComfyTree, tmp_path: Path, civitai: FakeCivitai, hub: FakeHub) -> tuple[Path, dict[str, str]]:
    nodes = [
        ui_node(i, kind, [name, 1.0, 1.0] if kind == "LoraLoader" else [name])
        for i, (kind, name) in enumerate(NAMES, start=1)
    ]
    comfy_tree.workflow("faults.json", ui_workflow(nodes))
    # The agent (a fake CLI with a worker of its own) answers which secret variables it could see.
    folder = qwen_cli.install(tmp_path / "bin", "env")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[search]
backend_order = ["qwen", "civitai", "huggingface"]
backoff_base_seconds = 0.001
backoff_max_seconds = 0.01
min_interval_seconds = 0.0
retry_after_max_seconds = 0.0
connect_timeout_seconds = 0.3
read_timeout_seconds = 0.3
request_timeout_seconds = 0.6
max_response_mb = 1.0
network_deadline_seconds = {DEADLINE}
[civitai]
base_url = "{civitai.url}"
[huggingface]
endpoint = "{hub.url}"
authors = ["Comfy-Org", "city96", "black-forest-labs"]
[qwen]
transport = "cli"
command = "qwen"
timeout_seconds = 1.0
"""
    )
    return config, {**SECRETS, "PATH": qwen_cli.path_with(folder)}


def _cycle(comfy_tree: ComfyTree, home: Path, config: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    done = run_cli(
        "--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root), home=home, env=env
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    return took, done.stdout + done.stderr


def _assert_no_secret(text: str, home: Path) -> None:
    text += "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())
    for value in SECRETS.values():
        assert value not in text
    assert "env:CIVITAI" not in text and "HF_TOKEN," not in text  # the agent never saw a token either


def test_cycle_meeting_every_fault_keeps_every_token_secret(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, fakes: tuple[FakeCivitai, FakeHub]
) -> None:
    civitai, hub = fakes
    config, env = _setup(comfy_tree, tmp_path, civitai, hub)
    civitai.fail("/", *FAULTS)
    hub.fail("/", *reversed(FAULTS))
    took, text = _cycle(comfy_tree, home, config, env)
    search = artifacts.read(home / "state" / "search.json", "search")
    for result in search["results"]:
        assert result["status"] != "FOUND" or result["source"] == "manager_model_list", result
    assert any(r.headers.get("Authorization") == f"Bearer {SECRETS['CIVITAI_API_KEY']}" for r in civitai.requests)
    _assert_no_secret(text, home)
    # Python's own start and the other stages come on top of the search's deadline.
    assert took < DEADLINE + 15, took


@pytest.mark.reliability
def test_secrets_under_each_fault_long(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, fakes: tuple[FakeCivitai, FakeHub]
) -> None:
    civitai, hub = fakes
    config, env = _setup(comfy_tree, tmp_path, civitai, hub)
    figures = []
    for fault in [*FAULTS, "refused"]:
        if fault == "refused":
            env_config = tmp_path / "refused.toml"
            env_config.write_text(
                config.read_text().replace(civitai.url, "http://127.0.0.1:9").replace(hub.url, "http://127.0.0.1:9")
            )
            took, text = _cycle(comfy_tree, home, env_config, env)
        else:
            civitai.fault_all = hub.fault_all = fault
            took, text = _cycle(comfy_tree, home, config, env)
            civitai.fault_all = hub.fault_all = None
        search = json.loads((home / "state" / "search.json").read_text())
        # Nothing is FOUND from a fault: a FOUND comes from the offline sources (ComfyUI-Manager's list, a
        # declaration), whatever their URL check met, or from the cache.
        for result in search["results"]:
            offline = result["source"] in ("manager_model_list", "declared") or result["details"].get("cached")
            assert result["status"] != "FOUND" or offline, (fault, result)
        _assert_no_secret(text, home)
        figures.append((repr(fault), took))
    healthy = _cycle(comfy_tree, home, config, env)
    _assert_no_secret(healthy[1], home)
    longest = max(figures, key=lambda f: f[1])
    print(
        f"\nsecrets under faults: {len(figures)} real cycles with both tokens set, no token in any file, stream "
        f"or exception; longest cycle {longest[1]:.2f} s ({longest[0]}, search deadline {DEADLINE:g} s, "
        "whole cycle incl. Python start)"
    )
