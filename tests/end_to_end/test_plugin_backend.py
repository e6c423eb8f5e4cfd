"""A third-party backend, installed as a distribution with an entry point, with its own config section
(defaults in its schema) and its own secret: the real CLI runs a cycle with it against a local server, and the
secret goes to that server only."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from comfywatchman import artifacts
from tests.fakes import FakeServer, Recorded, Reply
from tests.fakes.civitai_server import FakeCivitai
from tests.helpers.comfy_tree import ComfyTree, run_cli, ui_node, ui_workflow

pytestmark = pytest.mark.slow

SECRET = "tiny-SECRET-token-789"

PLUGIN = '''
from comfywatchman.search.base import Credential, Evidence, SearchBackend, Status


class TinyBackend(SearchBackend):
    """Asks one tiny service whether it has a file."""

    name = "tiny"
    config_section = "tiny"
    config_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["base_url", "label"],
        "properties": {
            "base_url": {"type": "string", "default": "http://127.0.0.1:9"},
            "label": {"type": "string", "default": "tiny says so"},
        },
    }
    credentials = (Credential(("TINY_TOKEN",), "base_url"),)

    def lookup(self, query):
        status, body = self.context.http.get_json(self.settings["base_url"] + "/find", params={"name": query.basename})
        if status == 404:
            return self.result(query, Status.NOT_FOUND, "tiny has no such file")
        return self.result(
            query, Status.FOUND, self.settings["label"], evidence=Evidence.EXACT_FILENAME, url=body["url"]
        )
'''


class TinyService(FakeServer):
    """Knows one file."""

    def route(self, request: Recorded) -> Reply:
        if request.path == "/find" and request.query.get("name") == ["tiny_lora.safetensors"]:
            return Reply(200, {"url": "https://tiny.example/tiny_lora.safetensors"})
        return Reply(404, {"error": "no such file"})


def install_plugin(site: Path) -> None:
    """Make the distribution ``tiny-backend`` visible on ``site`` as pip would: module + dist-info."""
    site.mkdir(parents=True)
    (site / "tiny_backend.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "tiny_backend-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-backend\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[comfywatchman.backends]\ntiny = tiny_backend:TinyBackend\n")


@pytest.fixture
def servers() -> Iterator[tuple[TinyService, FakeCivitai]]:
    with TinyService() as tiny, FakeCivitai() as civitai:
        yield tiny, civitai  # type: ignore[misc]


def test_plugin_backend_with_section_and_secret_runs_a_cycle(
    comfy_tree: ComfyTree, home: Path, tmp_path: Path, servers: tuple[TinyService, FakeCivitai]
) -> None:
    tiny, civitai = servers
    site = tmp_path / "site"
    install_plugin(site)
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"TINY_TOKEN={SECRET}\n")
    secrets.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[paths]
secrets_file = "{secrets}"
[search]
backend_order = ["tiny", "civitai"]
min_interval_seconds = 0.0
[civitai]
base_url = "{civitai.url}"
[tiny]
base_url = "{tiny.url}"
"""
    )
    nodes = [
        ui_node(1, "LoraLoader", ["tiny_lora.safetensors", 1, 1]),
        ui_node(2, "LoraLoader", ["zzqx_x.safetensors", 1, 1]),
    ]
    comfy_tree.workflow("w.json", ui_workflow(nodes))
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    args = ("--run-cycle", "--force", "--config", str(config), "--comfyui-root", str(comfy_tree.root))
    result = run_cli(*args, home=home, env=env)
    assert result.returncode == 0, result.stderr

    search = artifacts.read(home / "state" / "search.json", "search")
    by_name = {r["name"]: r for r in search["results"]}
    assert search["backend_order"] == ["tiny", "civitai"]
    found = by_name["tiny_lora.safetensors"]
    # The label is the plug-in's own default from its section schema.
    assert (found["status"], found["source"], found["reason"]) == ("FOUND", "tiny", "tiny says so")
    assert [a["backend"] for a in by_name["zzqx_x.safetensors"]["attempts"]] == ["tiny", "civitai"]
    # The secret went to the plug-in's host, with every request, and to no other host.
    assert tiny.count == 2 and all(r.headers.get("Authorization") == f"Bearer {SECRET}" for r in tiny.requests)
    assert civitai.count > 0 and not any("Authorization" in r.headers for r in civitai.requests)
    text = (
        result.stdout + result.stderr + "".join(p.read_text(errors="replace") for p in home.rglob("*") if p.is_file())
    )
    assert SECRET not in text


def test_plugin_section_is_validated_with_every_other_error(comfy_tree: ComfyTree, home: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_plugin(site)
    config = tmp_path / "config.toml"
    config.write_text('[search]\nbackend_order = ["tiny", "tinny"]\n[tiny]\nbase_url = 5\nlabl = "x"\n')
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("--run-cycle", "--offline", "--config", str(config), home=home, env=env)
    assert result.returncode == 2
    assert f"{config}: at 'tiny.base_url': 5 is not of type 'string'" in result.stderr
    assert "'labl' was unexpected" in result.stderr and "did you mean 'label'?" in result.stderr
    assert "unknown backend 'tinny' (did you mean 'tiny'?)" in result.stderr
    assert not (home / "state").exists() or not any((home / "state").iterdir())
