"""A file server on 127.0.0.1 that serves real bytes, as a CDN behind Civitai's signed URLs or the Hub's LFS
redirects does: streamed in chunks from memory or from a file on disk, ``Range: bytes=N-`` answered with 206
and ``Content-Range`` (416 past the end), ``Content-Disposition`` when asked.

Scripted failures, on top of the base fake's statuses and resets (``fail(path, action)``):
``("cut", n)`` sends the headers for the whole answer, ``n`` bytes of body, then closes the connection;
``"ignore_range"`` answers 200 with the whole file whatever the Range; ``("drip", seconds)`` sends the body
in 64 KiB pieces with a pause after each (for a test that kills a downloader midway);
``("body", bytes)`` serves other bytes than the file (a corrupt mirror).
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes import FakeServer, Recorded, Reply, reset_connection

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
CHUNK = 1024 * 1024


@dataclass
class Served:
    """One file: its bytes (or a path to read them from) and an optional Content-Disposition name."""

    data: bytes | Path
    filename: str | None = None

    @property
    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)

    def read(self, start: int, end: int) -> Any:
        """Yield the bytes ``start`` to ``end`` (exclusive) in chunks."""
        if isinstance(self.data, bytes):
            for offset in range(start, end, CHUNK):
                yield self.data[offset : min(end, offset + CHUNK)]
            return
        with open(self.data, "rb") as handle:
            handle.seek(start)
            left = end - start
            while left > 0:
                block = handle.read(min(CHUNK, left))
                if not block:
                    return
                left -= len(block)
                yield block


class ByteServer(FakeServer):
    """Serves ``files`` (path -> Served) with Range support and the scripted cuts above."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.files: dict[str, Served] = {}

    def add(self, path: str, data: bytes | Path, filename: str | None = None) -> str:
        """Serve ``data`` at ``path``; return its full URL."""
        self.files[path] = Served(data, filename)
        return self.url + path

    def _serve(self, handler: Any) -> None:
        parts = urlsplit(handler.path)
        request = Recorded(handler.command, parts.path, parse_qs(parts.query), dict(handler.headers.items()), b"")
        with self._lock:
            self.requests.append(request)
        action = self._take_action(handler.command, parts.path)
        if action == "reset":
            reset_connection(handler)
            return
        if isinstance(action, int):
            self._send(handler, self.error_reply(action))
            return
        if isinstance(action, Reply):
            self._send(handler, action)
            return
        served = self.files.get(parts.path)
        if served is None:
            self._send(handler, Reply(404, {"error": "File not found"}))
            return
        if isinstance(action, tuple) and action[0] == "body":
            served = Served(action[1], served.filename)
        self._stream(handler, served, request, action)

    def _stream(self, handler: Any, served: Served, request: Recorded, action: Any) -> None:
        size = served.size
        start, status = 0, 200
        match = _RANGE.match(request.headers.get("Range", ""))
        headers = {"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes", "ETag": '"v1"'}
        if served.filename:
            headers["Content-Disposition"] = f'attachment; filename="{served.filename}"'
        if match and action != "ignore_range":
            start = int(match.group(1))
            if start >= size:
                self._send(handler, Reply(416, b"", {"Content-Range": f"bytes */{size}"}))
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
        headers["Content-Length"] = str(size - start)
        limit = size
        if isinstance(action, tuple) and action[0] == "cut":
            limit = min(size, start + int(action[1]))
        drip = float(action[1]) if isinstance(action, tuple) and action[0] == "drip" else 0.0
        try:
            handler.send_response(status)
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            if handler.command == "HEAD":
                return
            for block in served.read(start, limit):
                if drip:
                    for offset in range(0, len(block), 65536):
                        handler.wfile.write(block[offset : offset + 65536])
                        handler.wfile.flush()
                        time.sleep(drip)
                else:
                    handler.wfile.write(block)
            if limit < size:
                handler.wfile.flush()
                handler.connection.shutdown(socket.SHUT_RDWR)
                handler.close_connection = True
        except OSError:
            handler.close_connection = True
