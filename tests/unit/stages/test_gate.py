"""Every branch of the gate with a fake NVML, fake clocks and a fake (or local) ComfyUI."""

from __future__ import annotations

import json
import threading
import urllib.error
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from comfywatchman import artifacts, gpu, stage_runner
from comfywatchman.awake import ClockReading, Observation, observe
from comfywatchman.comfy import server
from comfywatchman.config import Config
from comfywatchman.lock import CycleLock
from comfywatchman.stages import gate
from comfywatchman.stages.context import Machine, StageContext
from tests.fakes.machine import SCHEDULE, FakeNvml, NVMLError, nothing_listening
from tests.helpers.config import config_with

NOW = datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc)


def schedule(**changes: Any) -> dict[str, Any]:
    return {**SCHEDULE, **changes}


def make_config(home: Path, url: str = "", offline: bool = False, **changes: Any) -> Config:
    overrides = {"schedule": schedule(**changes), "comfyui": {"url": url}}
    return config_with(home, overrides, comfyui_root=home, offline=offline)


def observed(awake_s: float, resumed: float | None, slept: float = 0.0) -> tuple[ClockReading, Observation]:
    reading = ClockReading(awake_s, 100.0, "b1", "linux")
    return reading, Observation({}, resumed, False, slept, False)


# --- awake -------------------------------------------------------------------------------------------------


def test_check_awake_skips_when_the_machine_resumed_within_the_grace() -> None:
    check = gate.check_awake(SCHEDULE, *observed(5060.0, 5000.0, slept=6 * 3600))
    assert not check.ok
    assert "resumed from suspend after 6 h 00 min suspended 60 s ago" in check.detail
    assert "wake_grace_seconds" in check.detail


def test_check_awake_passes_when_the_grace_has_passed() -> None:
    check = gate.check_awake(SCHEDULE, *observed(5300.0, 5000.0))
    assert check.ok and check.detail == "awake for 5 min since it last resumed from suspend"


def test_check_awake_skips_right_after_a_boot() -> None:
    check = gate.check_awake(SCHEDULE, *observed(45.0, 0.0))
    assert not check.ok and "booted" in check.detail


def test_check_awake_passes_when_no_resume_is_known() -> None:
    assert gate.check_awake(SCHEDULE, *observed(45.0, None)).ok


def test_check_awake_passes_saying_so_when_the_platform_cannot_tell() -> None:
    reading = ClockReading(10.0, None, None, "sunos5")
    check = gate.check_awake(SCHEDULE, reading, observe(reading, None, NOW))
    assert check.ok and "cannot tell" in check.detail and "sunos5" in check.detail


def test_check_awake_passes_when_the_grace_is_zero() -> None:
    assert gate.check_awake(schedule(wake_grace_seconds=0), *observed(5000.0, 5000.0)).ok


# --- vram --------------------------------------------------------------------------------------------------


def test_check_vram_checks_the_gpu_with_most_free_memory_by_default() -> None:
    check = gate.check_vram(SCHEDULE, gpu.probe(FakeNvml.with_free(1.0, 9.0)))
    assert check.ok and check.detail.startswith("GPU 1 ")


def test_check_vram_skips_when_the_configured_gpu_is_busy() -> None:
    check = gate.check_vram(schedule(gpu_index=0), gpu.probe(FakeNvml.with_free(1.0, 9.0)))
    assert not check.ok
    assert check.detail == "GPU 0 (NVIDIA GeForce RTX 4090): 1.0 GiB free of 24.0, need 4; another job is using the GPU"


def test_check_vram_skips_when_the_best_gpu_is_below_the_minimum() -> None:
    assert not gate.check_vram(schedule(min_vram_gb=10), gpu.probe(FakeNvml.with_free(1.0, 9.0))).ok


def test_check_vram_skips_when_the_configured_gpu_does_not_exist() -> None:
    check = gate.check_vram(schedule(gpu_index=3), gpu.probe(FakeNvml.with_free(9.0)))
    assert not check.ok and "GPU 3 named by [schedule] gpu_index does not exist (1 found)" in check.detail


def test_check_vram_skips_with_nvmls_words_when_the_configured_gpu_errors() -> None:
    probe = gpu.probe(FakeNvml([NVMLError("GPU is lost"), ("x", 9 * FakeNvml.GIB, 24 * FakeNvml.GIB)]))
    check = gate.check_vram(schedule(gpu_index=0), probe)
    assert not check.ok and "GPU is lost" in check.detail
    assert gate.check_vram(SCHEDULE, probe).ok  # the best readable GPU is checked otherwise


def test_check_vram_passes_without_nvml_unless_a_gpu_is_required() -> None:
    probe = gpu.probe(FakeNvml(init_error=NVMLError("Driver Not Loaded")))
    assert gate.check_vram(SCHEDULE, probe).ok
    check = gate.check_vram(schedule(require_gpu=True), probe)
    assert not check.ok and "Driver Not Loaded" in check.detail and "require_gpu" in check.detail


# --- ComfyUI queue -----------------------------------------------------------------------------------------


def fetch_returning(body: Any) -> gate.Fetch:
    def fetch(url: str, timeout: float) -> Any:
        if isinstance(body, Exception):
            raise body
        return body

    return fetch


@pytest.mark.parametrize(
    ("body", "ok", "words"),
    [
        ({"queue_running": [], "queue_pending": []}, True, "is idle"),
        ({"queue_running": [[0, "id", {}]], "queue_pending": []}, False, "busy: 1 running, 0 pending"),
        ({"queue_running": [], "queue_pending": [[1], [2]]}, False, "busy: 0 running, 2 pending"),
        ({"error": "nope"}, True, "did not answer a queue"),
        (ValueError("Expecting value"), True, "did not answer JSON"),
        (urllib.error.HTTPError("http://x/queue", 404, "Not Found", None, None), True, "answered HTTP 404"),  # type: ignore[arg-type]
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), True, "does not answer"),
        (TimeoutError("timed out"), True, "does not answer"),
    ],
)
def test_check_comfyui_queue_reads_the_queue_when_the_server_answers(body: Any, ok: bool, words: str) -> None:
    check = gate.check_comfyui_queue(SCHEDULE, "http://127.0.0.1:8188", fetch_returning(body))
    assert check.ok is ok and words in check.detail


def test_check_comfyui_queue_is_off_when_disabled_or_without_a_url() -> None:
    never = fetch_returning(AssertionError("must not be called"))
    assert (
        "check_comfyui_queue = false"
        in gate.check_comfyui_queue(schedule(check_comfyui_queue=False), "http://127.0.0.1:8188", never).detail
    )
    assert "no [comfyui] url" in gate.check_comfyui_queue(SCHEDULE, "", never).detail


def test_check_comfyui_queue_asks_only_this_machine_when_offline() -> None:
    never = fetch_returning(AssertionError("must not be called"))
    assert "--offline" in gate.check_comfyui_queue(SCHEDULE, "http://render-box:8188", never, offline=True).detail
    busy = fetch_returning({"queue_running": [[0]], "queue_pending": []})
    assert not gate.check_comfyui_queue(SCHEDULE, "http://localhost:8188/", busy, offline=True).ok


class _Queue(BaseHTTPRequestHandler):
    body: bytes = b'{"queue_running": [], "queue_pending": []}'

    def do_GET(self) -> None:
        if self.path != "/queue":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def comfyui() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Queue)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_check_comfyui_queue_skips_when_a_real_server_has_pending_prompts(comfyui: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{comfyui.server_address[1]}"
    assert gate.check_comfyui_queue(SCHEDULE, url, server.get_json).ok
    _Queue.body = b'{"queue_running": [[3, "abc", {}, {}, []]], "queue_pending": [[4, "def", {}, {}, []]]}'
    try:
        check = gate.check_comfyui_queue(SCHEDULE, url + "/", server.get_json)
    finally:
        _Queue.body = b'{"queue_running": [], "queue_pending": []}'
    assert not check.ok and "1 running, 1 pending" in check.detail


def test_check_comfyui_queue_passes_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    check = gate.check_comfyui_queue(SCHEDULE, f"http://127.0.0.1:{port}", server.get_json)
    assert check.ok and "does not answer" in check.detail


# --- lock, decide, run -------------------------------------------------------------------------------------


def test_check_lock_fails_when_this_process_does_not_hold_it(tmp_path: Path) -> None:
    lock = CycleLock(tmp_path / "cycle.lock")
    assert not gate.check_lock(lock).ok
    with lock:
        assert gate.check_lock(lock).ok


def test_decide_names_the_first_failing_check() -> None:
    checks = [gate.Check("awake", True, "fine"), gate.Check("vram", False, "low"), gate.Check("lock", False, "x")]
    assert gate.decide(checks) == ("skip", "vram: low")
    assert gate.decide(checks[:1]) == ("run", "awake: fine")


def run_gate(home: Path, nvml: Any, clocks: ClockReading, **kwargs: Any) -> Any:
    config = kwargs.pop("config", None) or make_config(home)
    machine = Machine(read_clocks=lambda: clocks, load_nvml=lambda: nvml, fetch_json=nothing_listening)
    ctx = StageContext(config, "20251023T120000Z-abcd", lambda: NOW, machine=machine, **kwargs)
    return gate.run(ctx)


def test_run_writes_a_valid_skip_with_its_reason_when_vram_is_short(tmp_path: Path) -> None:
    outcome = run_gate(tmp_path, FakeNvml.with_free(1.0), ClockReading(9000.0, 0.0, "b1"))
    assert outcome.skipped_reason.startswith("vram: GPU 0")
    document = artifacts.read(tmp_path / "state" / "gate.json", "gate")
    assert document["verdict"] == "skip" and [c["name"] for c in document["checks"]] == [
        "awake",
        "vram",
        "comfyui_busy",
        "lock",
    ]
    assert artifacts.read(tmp_path / "state" / "awake.json", "awake")["awake_s"] == 9000.0


def test_run_skips_every_check_but_the_lock_when_forced(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    lock = CycleLock(config.state_dir / "cycle.lock")
    with lock:
        outcome = run_gate(
            tmp_path, FakeNvml.with_free(0.1), ClockReading(10.0, 0.0, "b1"), force=True, lock=lock, config=config
        )
    assert outcome.skipped_reason is None
    document = artifacts.read(tmp_path / "state" / "gate.json", "gate")
    assert document["forced"] and document["checks"][-1]["name"] == "lock"


def test_run_single_stage_exits_75_when_the_gate_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = make_config(tmp_path)
    machine = Machine(read_clocks=lambda: ClockReading(9000.0, 0.0, "b1"), load_nvml=lambda: FakeNvml.with_free(0.5))
    assert stage_runner.run_single_stage("gate", config, clock=lambda: NOW, machine=machine) == 75
    assert json.loads((tmp_path / "state" / "gate.json").read_text())["verdict"] == "skip"
    assert json.loads((tmp_path / "log" / "structured.log").read_text().splitlines()[-1])["event"] == "skipped"
