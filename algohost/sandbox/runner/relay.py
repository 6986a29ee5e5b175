"""The runner's channel, lent to a notebook's kernel: what a cell asks reaches the worker.

Standard library only (copied into every image beside runner.py). A notebook's cells run
in a kernel, a process of their own that never holds the protocol's file descriptors; the
kernel's `algohost_runtime` speaks to a `RelayChannel` instead, which forwards each
`send` and `read` over a private Unix socket to the runner, which does it on its own
channel. Every op the runtime has (data reads, artifacts, and any added later) thus works
from a cell unchanged, and checking rights stays the worker's business.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
from typing import Any

SOCKET_ENV = "ALGOHOST_RELAY_SOCKET"


class RelayChannel:
    """The kernel's side: `send` and `read` as the runner's Channel has them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._lock = threading.Lock()

    def _connected(self) -> Any:
        if self._file is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(self.path)
            self._sock, self._file = sock, sock.makefile("rwb")
        return self._file

    def _ask(self, request: dict[str, Any], answer: bool) -> dict[str, Any] | None:
        with self._lock:
            f = self._connected()
            f.write(json.dumps(request, separators=(",", ":")).encode("utf-8") + b"\n")
            f.flush()
            if not answer:
                return None
            line = f.readline()
        if not line:
            raise ConnectionError("the runner closed the relay")
        reply: dict[str, Any] | None = json.loads(line)
        return reply

    def send(self, msg: dict[str, Any]) -> None:
        self._ask({"op": "send", "msg": msg}, answer=True)  # acknowledged: sent in order

    def read(self) -> dict[str, Any] | None:
        return self._ask({"op": "read"}, answer=True)


class RelayServer:
    """The runner's side: one listening socket in a private directory, a thread per kernel
    connection, each request done on the runner's channel."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.directory = tempfile.mkdtemp(prefix="algohost-relay-")  # mode 0700
        self.path = os.path.join(self.directory, "relay.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(4)
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="relay-conn",
                             daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f:
            for line in f:
                request = json.loads(line)
                if request.get("op") == "send":
                    self.channel.send(request["msg"])
                    reply: Any = {"ok": True}
                elif request.get("op") == "read":
                    reply = self.channel.read()
                else:
                    reply = {"ok": False}
                f.write(json.dumps(reply, separators=(",", ":")).encode("utf-8") + b"\n")
                f.flush()
