"""A running ComfyUI's /object_info as the truth, faked by a local http.server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from comfywatchman.comfy import server

OBJECT_INFO: dict[str, Any] = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["SDXL/base.safetensors", "other.ckpt"], {"tooltip": "x"}]}},
        "python_module": "nodes",
    },
    "UNETLoader": {
        "input": {
            "required": {
                "unet_name": ["COMBO", {"options": ["flux1-dev.safetensors"]}],
                "weight_dtype": [["default", "fp8_e4m3fn"]],
            }
        },
        "python_module": "nodes",
    },
    "ImageResizeKJ": {
        "input": {"required": {"width": ["INT", {"default": 512}]}},
        "python_module": "custom_nodes.ComfyUI-KJNodes",
    },
}


class FakeComfyUI(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/object_info", "/api/object_info"):
            body = json.dumps(OBJECT_INFO).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def comfy_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeComfyUI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_reads_both_combo_formats_and_modules(comfy_url: str) -> None:
    truth = server.fetch(comfy_url)
    assert truth is not None and truth.digest
    assert truth.combo_match("CheckpointLoaderSimple", "ckpt_name", "SDXL\\base.safetensors") == (
        True,
        "SDXL/base.safetensors",
    )
    assert truth.combo_match("UNETLoader", "unet_name", "missing.safetensors") == (False, None)
    assert truth.combo_match("UNETLoader", "unet_name", "flux1-dev.safetensors") == (True, "flux1-dev.safetensors")
    assert truth.combo_match("ImageResizeKJ", "width", "x") is None
    assert truth.pack_of("ImageResizeKJ") == "ComfyUI-KJNodes"
    assert truth.pack_of("UNETLoader") is None


def test_fetch_returns_none_when_nothing_answers() -> None:
    assert server.fetch("http://127.0.0.1:9", timeout=0.5) is None
