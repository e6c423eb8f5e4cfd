"""Network faults: every cycle under a hostile Civitai and Hub ends within its deadline, never turns a fault into
FOUND, keeps cached FOUND answers, and a healthy cycle afterwards recovers; no token reaches a result, the
cache or the log. ``make test`` runs a fast version (tiny deadline and timeouts set through the config);
``make test-reliability`` runs the long one (several rounds of every fault) and prints its figures."""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from comfywatchman.search.base import Status
from comfywatchman.search.cache import SearchCache
from tests.fakes import Reply
from tests.unit.search.conftest import _no_hub_env, civitai_server, hub_server, make_config  # noqa: F401 (fixtures)
from tests.unit.search.test_cycle import CASES, queries, run_cycle

SECRETS = {"CIVITAI_API_KEY": "civ-SECRET-KEY-123", "HF_TOKEN": "hf_SECRET_TOKEN_456"}
FAULTS: list[Any] = [
    "reset",
    ("slow", 3.0),
    ("drip", 0.05),
    ("drip_headers", 0.05),
    503,
    Reply(429, {"error": "slow down"}, {"Retry-After": "86400"}),
    "loop",
    "huge",
    "endless",
    "garbage",
    "truncated",
    "echo_token",
]
FAST = {
    "network_deadline_seconds": 1.5,
    "connect_timeout_seconds": 0.3,
    "read_timeout_seconds": 0.3,
    "request_timeout_seconds": 0.6,
    "max_response_mb": 1.0,
    "retry_after_max_seconds": 0.0,
}
CACHED = 2  # the first cases (FOUND on Civitai) are searched once while healthy, then served from the cache


def fault_round(tmp_path: Path, civitai: Any, hub: Any, fault: Any, search: dict[str, Any]) -> dict[str, Any]:
    """Run healthy (cached part), faulty, then healthy cycles; check each; return the faulty cycle's figures."""
    config = make_config(tmp_path, civitai, hub, secrets=SECRETS, search=search)
    servers = [civitai, hub]
    run_cycle(config, SearchCache.from_config(config), queries()[:CACHED], servers)
    civitai.fault_all = hub.fault_all = fault
    started = time.monotonic()
    results, _costs, http = run_cycle(config, SearchCache.from_config(config), queries(), servers)
    took = time.monotonic() - started
    civitai.fault_all = hub.fault_all = None
    assert took <= search["network_deadline_seconds"] + 1.0, f"{fault!r}: cycle took {took:.2f} s"
    expected = [case[3] for case in CASES]
    for result, want in zip(results[CACHED:], expected[CACHED:], strict=True):
        if result.status is Status.FOUND:  # only a proof that came before the fault, never one from it
            assert want is Status.FOUND and result.sha256 == CASES[results.index(result)][4], (fault, result)
    assert [r.status for r in results[:CACHED]] == expected[:CACHED]  # cached FOUND answers survive
    healthy, _c, _h = run_cycle(config, SearchCache.from_config(config), queries(), servers)
    assert [r.status for r in healthy] == expected, f"no recovery after {fault!r}"
    text = json.dumps([r.to_json() for r in results + healthy])
    text += (Path(config.state_dir) / "search_cache.json").read_text(encoding="utf-8")
    for value in SECRETS.values():
        assert value not in text, f"{fault!r} leaked a token"
    return {"seconds": took, "requests": http.total_requests}


@pytest.mark.parametrize("fault", FAULTS, ids=repr)
def test_cycle_under_fault_is_bounded_truthful_and_recovers(tmp_path, civitai_server, hub_server, fault, caplog):  # noqa: F811
    caplog.set_level(logging.DEBUG)
    fault_round(tmp_path, civitai_server, hub_server, fault, FAST)
    for value in SECRETS.values():
        assert value not in caplog.text


@pytest.mark.reliability
def test_network_faults_long(tmp_path, civitai_server, hub_server):  # noqa: F811
    search = {**FAST, "network_deadline_seconds": 5.0, "read_timeout_seconds": 1.0, "request_timeout_seconds": 2.0}
    figures: list[dict[str, Any]] = []
    for round_ in range(3):
        for index, fault in enumerate(FAULTS):
            figures.append(fault_round(tmp_path / f"r{round_}-{index}", civitai_server, hub_server, fault, search))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The memory figures read /proc (Linux); elsewhere the suite reports the rest.
    linux = Path("/proc/self/status").exists()
    memory = {f: _client_peak_mib(civitai_server, f) if linux else float("nan") for f in ("huge", "endless", None)}
    print(
        f"\nnetwork faults: {len(figures)} faulty cycles ({len(FAULTS)} kinds x 3), "
        f"{sum(f['requests'] for f in figures)} requests under faults, longest cycle under faults "
        f"{max(f['seconds'] for f in figures):.2f} s (deadline {search['network_deadline_seconds']:g} s), "
        f"peak RSS of this test process (pytest and the fakes included) {peak_mib:.0f} MiB; a fresh process "
        f"refusing a 2 GiB answer: peak RSS {memory['huge']:.0f} MiB, an endless one: {memory['endless']:.0f} MiB "
        f"(shipped max_response_mb; the same process asking nothing: {memory[None]:.0f} MiB)"
    )


PROBE = """
import sys, tomllib
from comfywatchman.search.http import HttpClient, HttpSettings, RemoteError
with open(sys.argv[1], "rb") as handle:
    client = HttpClient(HttpSettings.from_config(tomllib.load(handle)["search"]))
if sys.argv[2] != "-":
    try:
        client.request("GET", sys.argv[2])
    except RemoteError as exc:
        assert exc.kind == "too_large", exc
    else:
        raise SystemExit("the answer was not refused")
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the forking parent's size.
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def _client_peak_mib(server: Any, fault: Any) -> float:
    """Return the peak RSS (MiB) of a fresh process whose client (shipped settings) asks ``server`` under
    ``fault`` (None: asks nothing, the baseline)."""
    defaults = Path(__file__).resolve().parents[2] / "config" / "default.toml"
    server.fault_all = fault
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(defaults), f"{server.url}/api/v1/models" if fault else "-"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        server.fault_all = None
    return int(done.stdout.split()[-1]) / 1024
