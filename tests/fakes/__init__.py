"""Faithful doubles of the remote services, served by local HTTP servers on 127.0.0.1.

Each fake is a ``FakeServer``: a threaded ``http.server`` on an ephemeral port that records every request
(method, path, query, headers, body) and can be scripted to fail the next matching requests in the ways the
real services do (``external-apis.md``): a status with the service's JSON body and headers, a body cut short
(``"truncated"``), an answer slower than the client's timeout (``("slow", seconds)``), or a connection reset
(``"reset"``). The hostile faults of the network suites too: ``("drip", seconds)`` sends the real answer one
byte at a time with a pause after each, ``("drip_headers", seconds)`` its status line and headers so,
``"huge"`` declares 2 GiB and streams zeros until the client hangs up,
``"endless"`` streams zeros without a length, ``"garbage"`` answers 200 with bytes that are no JSON,
``"loop"`` redirects to itself, ``"echo_token"`` redirects to the same path with the request's Authorization
value in the query (a server echoing a token back). ``fault_all`` applies one action to every request until
it is set back to None. The code under test reaches them through its normal configuration (base URLs).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str  # raw, still URL-encoded
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    """What a fake answers: status, headers and a body (JSON-encoded when not bytes)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode("utf-8")


Action = Any  # int status | Reply | "truncated" | "reset" | ("slow", seconds) | the hostile faults above


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Resets and client timeouts are the point of several tests; tracebacks would only be noise.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without NODELAY, Nagle plus delayed ACKs add ~40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        self.server.fake._serve(self)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _dispatch


def reset_connection(handler: Any) -> None:
    """End ``handler``'s connection with a TCP RST: the client sees "connection reset by peer"."""
    # SO_LINGER 0 turns close() into a reset instead of an orderly FIN.
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


class FakeServer:
    """Base of every fake: lifecycle, request log, scripted failures. Subclasses implement ``route``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, 0), _Handler)
        self._server.fake = self
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.requests: list[Recorded] = []
        self._script: list[tuple[str, str, Action]] = []
        self._lock = threading.Lock()
        self.fault_all: Action | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- scripting and inspection ---------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """How many requests arrived so far."""
        return len(self.requests)

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def fail(self, path_prefix: str, *actions: Action, method: str = "") -> None:
        """Answer the next requests whose path starts with ``path_prefix`` with ``actions``, one each."""
        with self._lock:
            self._script.extend((method.upper(), path_prefix, action) for action in actions)

    def _take_action(self, method: str, path: str) -> Action | None:
        if self.fault_all is not None:
            return self.fault_all
        with self._lock:
            for index, (want_method, prefix, action) in enumerate(self._script):
                if path.startswith(prefix) and (not want_method or want_method == method):
                    del self._script[index]
                    return action
        return None

    # -- serving -----------------------------------------------------------------------------------------

    def route(self, request: Recorded) -> Reply:  # pragma: no cover - every fake overrides it
        return Reply(404, {"error": "not found"})

    def error_reply(self, status: int) -> Reply:
        """The reply a scripted bare status gives; fakes override it with their service's body and headers."""
        return Reply(status, {"error": f"HTTP {status}"})

    def _serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        request = Recorded(
            handler.command,
            parts.path,
            parse_qs(parts.query, keep_blank_values=True),
            {k: v for k, v in handler.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(request)
        action = self._take_action(handler.command, parts.path)
        if action == "reset":
            reset_connection(handler)
            return
        if isinstance(action, tuple) and action[0] == "slow":
            time.sleep(float(action[1]))
            action = None
        if self._hostile(handler, request, action):
            return
        if action == "truncated":
            reply = self.route(request)
            full = reply.encoded() or b'{"items": [1, 2, 3]}'
            self._send(handler, Reply(reply.status, full[: max(1, len(full) // 2)], reply.headers))
            return
        if isinstance(action, int):
            reply = self.error_reply(action)
        elif isinstance(action, Reply):
            reply = action
        else:
            reply = self.route(request)
        self._send(handler, reply)

    def _hostile(self, handler: _Handler, request: Recorded, action: Action) -> bool:
        """Serve one of the hostile faults (drip, huge, endless, garbage, loop, echo_token); return whether
        ``action`` was one."""
        name = action[0] if isinstance(action, tuple) else action
        if name not in ("drip", "drip_headers", "huge", "endless", "garbage", "loop", "echo_token"):
            return False
        try:
            if name == "drip":
                data = self.route(request).encoded() or b'{"items": []}'
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                for index in range(len(data)):
                    handler.wfile.write(data[index : index + 1])
                    handler.wfile.flush()
                    time.sleep(float(action[1]))
            elif name == "drip_headers":
                data = self.route(request).encoded() or b'{"items": []}'
                head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                for index in range(len(head)):
                    handler.wfile.write(head[index : index + 1].encode("ascii"))
                    handler.wfile.flush()
                    time.sleep(float(action[1]))
                handler.wfile.write(data)
            elif name in ("huge", "endless"):
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                if name == "huge":
                    handler.send_header("Content-Length", str(2 * 1024**3))
                else:
                    handler.send_header("Connection", "close")
                handler.end_headers()
                block = b"0" * 65536
                for _ in range(2 * 1024**3 // len(block)):
                    handler.wfile.write(block)
            elif name == "garbage":
                self._send(handler, Reply(200, b"\x00\xffnot json <html>" * 50))
            elif name == "loop":
                self._send(handler, Reply(302, b"", {"Location": request.path}))
            else:
                token = request.headers.get("Authorization", "none").split()[-1]
                self._send(handler, Reply(302, b"", {"Location": f"{request.path}?token={token}&echo=1"}))
        except OSError:
            pass
        handler.close_connection = True
        return True

    def _send(self, handler: _Handler, reply: Reply) -> None:
        data = reply.encoded()
        try:
            handler.send_response(reply.status)
            headers = {"Content-Type": "application/json; charset=utf-8", **reply.headers}
            for key, value in headers.items():
                handler.send_header(key, value)
            if "Content-Length" not in reply.headers:
                handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(data)
        except OSError:
            # The client gave up (a test of its timeout); nothing to answer.
            handler.close_connection = True


def squash(text: str) -> str:
    """Return ``text`` lower-cased with only letters and digits kept."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    """Return True as soon as ``predicate()`` holds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
