"""A watchdog on one request's whole duration, headers included.

A read timeout bounds the silence between two bytes, not a request: a server that drips its status line and
headers one byte at a time keeps ``requests`` waiting for as long as it likes. ``mount(session)`` gives the
session connection classes that, as they start reading an answer, hand their socket to the watch of the
current thread (``watching(seconds)``); when the deadline passes first, the watch shuts the socket down, so the
blocked read ends at once and the request fails (``Watch.expired`` tells why).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

_current = threading.local()


class Watch:
    """Shuts down the socket of the answer being read once ``seconds`` have passed since the watch began (real
    time: it is about a socket, whatever clock the caller keeps its books with)."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self.expired = False
        self._timers: list[threading.Timer] = []

    def arm(self, sock: socket.socket) -> None:
        """Shut ``sock`` down when the deadline passes (at once if it has)."""
        timer = threading.Timer(max(0.0, self.deadline - time.monotonic()), self._expire, (sock,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _expire(self, sock: socket.socket) -> None:
        self.expired = True
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        """Stop every timer (the request is over)."""
        for timer in self._timers:
            timer.cancel()


@contextlib.contextmanager
def watching(seconds: float) -> Iterator[Watch]:
    """Watch every answer this thread reads for ``seconds`` from now, until the block ends; yield the Watch."""
    watch = Watch(seconds)
    _current.watch = watch
    try:
        yield watch
    finally:
        _current.watch = None
        watch.cancel()


def _arm(connection: HTTPConnection) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None and connection.sock is not None:
        watch.arm(connection.sock)


# urllib3's own HTTPConnection.getresponse returns its HTTPResponse where http.client's (its base) returns
# another: the override error is urllib3's, repeated by any subclass that keeps urllib3's signature.
class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _arm(self)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as above: urllib3's signature
        _arm(self)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


def mount(session: requests.Session) -> None:
    """Make every answer ``session`` reads over http and https watchable (see ``watching``)."""
    adapter = _WatchedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
