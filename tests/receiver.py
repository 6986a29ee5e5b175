"""A real webhook receiver for the integration tests: an HTTP server on 127.0.0.1 in a thread.

It answers from a script of statuses (then 200) and keeps every request it got.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.waiting import eventually


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Receiver:
    def __init__(self, *statuses: int, port: int | None = None) -> None:
        self.statuses = list(statuses)
        self.port = port or free_port()
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def respond(self, request: BaseHTTPRequestHandler) -> None:
        """Answer one POST with the next scripted status; a subclass may answer otherwise."""
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        with self._lock:
            self.received.append(Received(dict(request.headers.items()), body))
            status = self.statuses.pop(0) if self.statuses else 200
        request.send_response(status)
        request.send_header("Content-Length", "2")
        request.end_headers()
        request.wfile.write(b"ok")

    def start(self) -> Self:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                receiver.respond(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, count: int, timeout_s: float = 30) -> list[Received]:
        eventually(lambda: len(self.received) >= count, timeout_s,
                   lambda: f"{count} requests (got {len(self.received)})")
        return list(self.received)
