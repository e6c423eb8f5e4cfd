"""The shared HTTP client: retries, Retry-After, pacing, budget, circuit breaker, tokens and secrecy."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from comfywatchman.config import Secret
from comfywatchman.search.http import USER_AGENT, HttpClient, RemoteError, host_of, parse_retry_after
from tests.fakes import FakeServer, Recorded, Reply
from tests.unit.search.conftest import fast_settings, make_config

REPO = Path(__file__).resolve().parents[3]
SECRET = "civitai-SECRET-0123456789abcdef"


class Echo(FakeServer):
    """Answers 200 {"ok": true} everywhere; /redirect sends a 307 to ``target``."""

    target = ""

    def route(self, request: Recorded) -> Reply:
        if request.path == "/redirect":
            return Reply(307, None, {"Location": self.target})
        if request.path == "/missing":
            return Reply(404, {"error": "No model with id 0"})
        return Reply(200, {"ok": True})


@pytest.fixture
def echo():
    with Echo() as server:
        yield server


def refused_url() -> str:
    # A port that was just free: nothing listens there, so connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


def test_request_sends_user_agent_when_called(echo):
    client = HttpClient(fast_settings())
    response = client.request("GET", f"{echo.url}/x")
    assert response.status_code == 200
    assert echo.requests[0].headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("comfywatchman/")


def test_client_imports_network_modules_only_when_a_request_is_sent(tmp_path):
    # An offline cycle makes a client for its backends and sends nothing: requests (a tenth of a second to
    # import) must not be loaded for it. A new interpreter, so that no other test has imported it already.
    code = (
        "import sys\n"
        "from comfywatchman.search.http import HttpClient, HttpSettings\n"
        "from tests.unit.search.conftest import FAST_SEARCH\n"
        "client = HttpClient(HttpSettings.from_config(FAST_SEARCH))\n"
        "assert 'requests' not in sys.modules, 'imported when the client was made'\n"
        "session = client.session\n"
        "assert 'requests' in sys.modules and client.session is session\n"
        "assert session.headers['User-Agent'].startswith('comfywatchman/') and session.trust_env is False\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_request_retries_then_succeeds_when_429_then_200(echo):
    echo.fail("/x", 429, 502)
    client = HttpClient(fast_settings())
    assert client.request("GET", f"{echo.url}/x").json() == {"ok": True}
    assert echo.count == 3


def test_request_waits_retry_after_when_503_carries_it(echo):
    echo.fail("/x", Reply(503, {"error": "busy"}, {"Retry-After": "2"}))
    slept: list[float] = []
    client = HttpClient(fast_settings(retry_after_max=120.0), sleep=slept.append)
    assert client.request("GET", f"{echo.url}/x").status_code == 200
    assert slept == [2.0]


def test_request_caps_retry_after_when_server_asks_too_much(echo):
    echo.fail("/x", Reply(503, None, {"Retry-After": "50"}))
    slept: list[float] = []
    HttpClient(fast_settings(retry_after_max=30.0, network_deadline=300.0), sleep=slept.append).request(
        "GET", f"{echo.url}/x"
    )
    assert slept == [30.0]


def test_request_gives_up_host_when_retry_after_exceeds_time_left(echo):
    echo.fail("/x", Reply(429, None, {"Retry-After": "86400"}))
    slept: list[float] = []
    client = HttpClient(fast_settings(retry_after_max=120.0, network_deadline=300.0), sleep=slept.append)
    with pytest.raises(RemoteError) as first:
        client.request("GET", f"{echo.url}/x")
    assert first.value.kind == "throttled" and slept == []
    with pytest.raises(RemoteError) as second:
        client.request("GET", f"{echo.url}/y")
    assert second.value.kind == "circuit_open" and echo.count == 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_request_is_refused_without_sending_when_deadline_passed(echo):
    clock = FakeClock()
    client = HttpClient(fast_settings(network_deadline=10.0), sleep=clock.sleep, clock=clock)
    assert client.request("GET", f"{echo.url}/x").status_code == 200
    clock.now = 10.5
    with pytest.raises(RemoteError) as refused:
        client.request("GET", f"{echo.url}/x")
    assert refused.value.kind == "deadline" and "not searched yet" in str(refused.value)
    assert echo.count == 1 and client.deadline_refusals == 1


def test_request_does_not_back_off_past_deadline(echo):
    echo.fail("/x", 503, 503, 503)
    clock = FakeClock()
    client = HttpClient(
        fast_settings(network_deadline=5.0, backoff_base=4.0, backoff_max=30.0, max_attempts=4),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(RemoteError) as refused:
        client.request("GET", f"{echo.url}/x")
    # 4 s waited after the first 503; the next back-off (8 s) would pass the deadline, so it is not waited.
    assert refused.value.kind == "deadline" and client.sleeps == [4.0] and echo.count == 2


def test_request_gives_up_host_after_repeated_read_timeouts(echo):
    echo.fail("/x", ("slow", 1.0), ("slow", 1.0), ("slow", 1.0), ("slow", 1.0))
    client = HttpClient(fast_settings(read_timeout=0.2, max_attempts=4, host_timeouts=2))
    with pytest.raises(RemoteError) as first:
        client.request("GET", f"{echo.url}/x")
    assert first.value.kind == "timeout" and "given up" in str(first.value)
    with pytest.raises(RemoteError) as second:
        client.request("GET", f"{echo.url}/z")
    assert second.value.kind == "circuit_open" and echo.count == 2


def test_request_cuts_off_a_server_that_drips_its_answer(echo):
    echo.fail("/x", ("drip", 0.05))  # {"ok": true}: 12 bytes, 0.6 s; every byte well within the read timeout
    client = HttpClient(fast_settings(read_timeout=1.0, request_timeout=0.25, max_attempts=1))
    started = time.monotonic()
    with pytest.raises(RemoteError) as cut:
        client.request("GET", f"{echo.url}/x")
    assert cut.value.kind == "timeout" and "cut off" in str(cut.value)
    assert time.monotonic() - started < 0.5


def test_request_cuts_off_a_server_that_drips_its_headers(echo):
    echo.fail("/x", ("drip_headers", 0.05))  # ~60 bytes of status line and headers: 3 s, one byte at a time
    client = HttpClient(fast_settings(read_timeout=1.0, request_timeout=0.3, max_attempts=1))
    started = time.monotonic()
    with pytest.raises(RemoteError) as cut:
        client.request("GET", f"{echo.url}/x")
    assert cut.value.kind == "timeout" and "cut off" in str(cut.value)
    assert time.monotonic() - started < 0.8


def test_request_reads_a_dripped_answer_within_the_limit(echo):
    echo.fail("/x", ("drip", 0.01))
    assert HttpClient(fast_settings(request_timeout=2.0)).request("GET", f"{echo.url}/x").json() == {"ok": True}


@pytest.mark.parametrize("fault", ["huge", "endless"])
def test_request_refuses_an_answer_larger_than_any_api_answer(echo, fault):
    echo.fail("/x", fault)
    client = HttpClient(fast_settings(max_response_bytes=1024 * 1024))
    with pytest.raises(RemoteError) as refused:
        client.request("GET", f"{echo.url}/x")
    assert refused.value.kind == "too_large" and host_of(echo.url) in str(refused.value)
    assert echo.count == 1  # not retried: the next answer would be as large


def test_request_backs_off_exponentially_when_no_retry_after(echo):
    echo.fail("/x", 500, 500, 500)
    slept: list[float] = []
    client = HttpClient(fast_settings(max_attempts=4, backoff_base=1.0, backoff_max=3.0), sleep=slept.append)
    client.request("GET", f"{echo.url}/x")
    assert slept == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_request_never_retries_when_other_4xx(echo, status):
    echo.fail("/x", status)
    response = HttpClient(fast_settings()).request("GET", f"{echo.url}/x")
    assert response.status_code == status
    assert echo.count == 1


def test_request_raises_http_error_when_5xx_persists(echo):
    echo.fail("/x", 503, 503, 503)
    with pytest.raises(RemoteError) as info:
        HttpClient(fast_settings(max_attempts=3)).request("GET", f"{echo.url}/x")
    assert info.value.kind == "http" and info.value.status == 503
    assert echo.count == 3


def test_request_retries_when_connection_reset(echo):
    echo.fail("/x", "reset")
    response = HttpClient(fast_settings()).request("GET", f"{echo.url}/x")
    assert response.status_code == 200
    assert echo.count == 2


def test_request_raises_timeout_when_response_slower_than_read_timeout(echo):
    echo.fail("/x", ("slow", 0.6), ("slow", 0.6))
    client = HttpClient(fast_settings(read_timeout=0.2, max_attempts=2))
    with pytest.raises(RemoteError) as info:
        client.request("GET", f"{echo.url}/x")
    assert info.value.kind == "timeout"


def test_request_opens_circuit_when_host_refuses_connections():
    url = refused_url()
    client = HttpClient(fast_settings(max_attempts=3))
    with pytest.raises(RemoteError) as first:
        client.request("GET", url)
    assert first.value.kind == "connection"
    assert client.counts[host_of(url)] == 3
    with pytest.raises(RemoteError) as second:
        client.request("GET", url + "/other")
    assert second.value.kind == "circuit_open"
    assert client.counts[host_of(url)] == 3  # no new attempt


def test_request_gives_up_at_once_when_host_name_does_not_resolve():
    import requests
    from urllib3.exceptions import NameResolutionError

    class NoDns(requests.Session):
        calls = 0

        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            NoDns.calls += 1
            cause = NameResolutionError("civitai.com", None, socket.gaierror(-2, "Name or service not known"))  # type: ignore[arg-type]
            raise requests.ConnectionError(cause)

    client = HttpClient(fast_settings(max_attempts=4), session=NoDns())
    with pytest.raises(RemoteError, match="name does not resolve") as first:
        client.request("GET", "https://civitai.com/api/v1/models")
    assert first.value.kind == "connection" and NoDns.calls == 1  # no retry ladder
    with pytest.raises(RemoteError) as second:
        client.request("GET", "https://civitai.com/api/v1/models?query=x")
    assert second.value.kind == "circuit_open" and NoDns.calls == 1


def test_request_paces_requests_when_min_interval_set(echo):
    clock = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    client = HttpClient(fast_settings(min_interval=0.5), sleep=sleep, clock=lambda: clock[0])
    client.request("GET", f"{echo.url}/a")
    clock[0] += 0.2
    client.request("GET", f"{echo.url}/b")
    assert slept == [pytest.approx(0.3)]


def test_request_raises_budget_exhausted_when_cap_reached(echo):
    client = HttpClient(fast_settings(max_requests=2))
    client.request("GET", f"{echo.url}/a")
    client.request("GET", f"{echo.url}/b")
    with pytest.raises(RemoteError, match="request budget exhausted") as info:
        client.request("GET", f"{echo.url}/c")
    assert info.value.kind == "budget"
    assert echo.count == 2


def test_request_counts_requests_per_host_when_two_hosts(echo):
    with Echo() as other:
        client = HttpClient(fast_settings())
        echo.fail("/x", 429)
        client.request("GET", f"{echo.url}/x")
        client.request("GET", f"{other.url}/y")
        assert client.request_counts() == {host_of(echo.url): 2, host_of(other.url): 1}
        assert client.total_requests == 3


def test_request_sends_token_only_to_its_host_when_two_hosts(echo):
    with Echo() as other:
        client = HttpClient(fast_settings(), tokens={host_of(echo.url): Secret(SECRET)})
        client.request("GET", f"{echo.url}/a", headers={"Authorization": "Bearer smuggled"})
        client.request("GET", f"{other.url}/b", headers={"Authorization": "Bearer smuggled"})
        assert echo.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
        assert "Authorization" not in other.requests[0].headers


def test_request_drops_token_when_redirected_to_another_host(echo):
    with Echo(host="localhost") as cdn:
        echo.target = f"{cdn.url}/signed"
        client = HttpClient(fast_settings(), tokens={host_of(echo.url): Secret(SECRET)})
        response = client.request("GET", f"{echo.url}/redirect")
        assert response.status_code == 200
        assert echo.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
        assert cdn.requests[0].path == "/signed"
        assert "Authorization" not in cdn.requests[0].headers


def test_from_config_gives_each_token_its_own_host_when_secrets_set(tmp_path, civitai_server, hub_server):
    config = make_config(
        tmp_path,
        civitai_server,
        hub_server,
        secrets={"CIVITAI_API_KEY": SECRET, "HF_TOKEN": "hf_SECRETTOKEN"},
    )
    client = HttpClient.from_config(config)
    client.request("GET", f"{civitai_server.url}/api/v1/models/1001")
    client.request("GET", f"{hub_server.url}/api/models/someone/sdxl-vae")
    assert civitai_server.requests[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert hub_server.requests[0].headers["Authorization"] == "Bearer hf_SECRETTOKEN"


def test_errors_and_logs_hold_no_secret_when_a_url_carries_a_token(echo, caplog):
    caplog.set_level(logging.DEBUG)
    client = HttpClient(fast_settings(max_attempts=2), tokens={host_of(echo.url): Secret(SECRET)})
    echo.fail("/x", 503, 503)
    with pytest.raises(RemoteError) as http_error:
        client.request("GET", f"{echo.url}/x?token={SECRET}")
    with pytest.raises(RemoteError) as connect_error:
        client.request("GET", f"{refused_url()}?token={SECRET}")
    texts = [str(http_error.value), str(connect_error.value), repr(http_error.value), caplog.text]
    assert all(SECRET not in text for text in texts)
    assert "token=***" in str(http_error.value)
    assert repr(Secret(SECRET)) == "Secret('***')"


def test_scrub_masks_secrets_and_token_parameters_when_present():
    client = HttpClient(fast_settings(), tokens={"a:1": Secret("s3cr3t-value")})
    text = client.scrub("GET /dl?token=abc&x=1 Authorization: Bearer hf_xyz s3cr3t-value")
    assert "abc" not in text and "hf_xyz" not in text and "s3cr3t-value" not in text
    assert "x=1" in text


def test_json_of_raises_bad_json_when_body_truncated(echo):
    echo.fail("/x", "truncated")
    client = HttpClient(fast_settings())
    with pytest.raises(RemoteError) as info:
        client.get_json(f"{echo.url}/x")
    assert info.value.kind == "bad_json"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (None, None),
        ("soon", None),
        ("-3", 0.0),
        ("Thu, 23 Oct 2025 12:00:10 GMT", 10.0),
    ],
)
def test_parse_retry_after_reads_seconds_or_date_when_given(value, expected):
    now = datetime(2025, 10, 23, 12, 0, tzinfo=timezone.utc)
    assert parse_retry_after(value, now) == expected


def test_request_gives_up_host_still_throttled_after_every_retry(echo):
    echo.fail("/x", 429, 429, 429)
    client = HttpClient(fast_settings(max_attempts=3), sleep=lambda s: None)
    with pytest.raises(RemoteError) as first:
        client.request("GET", f"{echo.url}/x")
    assert first.value.kind == "http" and first.value.status == 429
    with pytest.raises(RemoteError) as second:
        client.request("GET", f"{echo.url}/y")  # would answer 200, but the host is given up for this cycle
    assert second.value.kind == "circuit_open" and echo.count == 3
    assert client.given_up(host_of(echo.url)) and client.host_failures(host_of(echo.url)) == 4


def test_request_counts_no_failure_for_a_healthy_host(echo):
    client = HttpClient(fast_settings())
    client.request("GET", f"{echo.url}/missing")
    assert client.host_failures(host_of(echo.url)) == 0 and client.given_up(host_of(echo.url)) is None
