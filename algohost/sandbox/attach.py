"""The container's attach socket as a line channel: stdin out, demultiplexed stdout lines in.

With tty off the engine frames stdout and stderr (8-byte header: stream id, three zero
bytes, big-endian size) and a protocol line may span frames. Knows nothing of Docker's API.
"""

from __future__ import annotations

import logging
import select
import socket
from collections import deque
from typing import Any

from algohost.errors import SandboxError
from algohost.sandbox.runner import protocol

log = logging.getLogger(__name__)

HEADER_BYTES = 8
STDERR = 2
STDERR_KEEP_BYTES = 8192
READ_BYTES = 256 * 1024


class ProtocolViolation(Exception):
    """The container sent something the runner never sends (handled inside the sandbox)."""


class FrameDemuxer:
    """Turns attach frames into complete stdout lines; keeps the tail of stderr."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.stderr = bytearray()
        self._frames = bytearray()
        self._line = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._frames += data
        lines: list[bytes] = []
        pos = 0
        while len(self._frames) - pos >= HEADER_BYTES:
            stream = self._frames[pos]
            size = int.from_bytes(self._frames[pos + 4 : pos + HEADER_BYTES], "big")
            end = pos + HEADER_BYTES + size
            if len(self._frames) < end:
                break
            payload = bytes(self._frames[pos + HEADER_BYTES : end])
            pos = end
            if stream == STDERR:
                self.stderr += payload
                del self.stderr[:-STDERR_KEEP_BYTES]
            else:
                lines.extend(self._split(payload))
        del self._frames[:pos]
        return lines

    def _split(self, payload: bytes) -> list[bytes]:
        if b"\n" not in payload:  # the common case for big lines: no rescanning
            self._line += payload
            complete: list[bytes] = []
        else:
            first, *middle, rest = payload.split(b"\n")
            complete = [bytes(self._line + first), *middle]
            self._line = bytearray(rest)
        if len(self._line) > self.max_line_bytes:
            raise ProtocolViolation(f"the container sent a line over {self.max_line_bytes} bytes")
        return complete


def raw_socket(handle: Any) -> socket.socket:
    """The socket under what docker-py's attach_socket returns (a SocketIO on unix/tcp)."""
    if isinstance(handle, socket.socket):
        return handle
    inner = getattr(handle, "_sock", None)
    if isinstance(inner, socket.socket):
        return inner
    raise SandboxError(f"unsupported attach transport: {type(handle).__name__}")


class AttachChannel:
    def __init__(self, handle: Any, max_line_bytes: int) -> None:
        self._handle = handle  # holds docker-py's response, which owns the connection
        self._sock = raw_socket(handle)
        self._demux = FrameDemuxer(max_line_bytes)
        self._lines: deque[bytes] = deque()
        self.eof = False

    @property
    def stderr_text(self) -> str:
        return self._demux.stderr.decode("utf-8", errors="replace")

    def send(self, line: bytes) -> None:
        self._sock.sendall(line)

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting (notices EOF)."""
        if not self.eof:
            self._read(0.0)

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next message, waiting at most `timeout` for more bytes; None if none yet."""
        if not self._lines and not self.eof:
            self._read(timeout)
        if self._lines:
            line = self._lines.popleft()
            try:
                return protocol.decode(line)
            except protocol.ProtocolError as exc:
                # Only the runner writes here; what it did not write ends the container.
                # The line itself may quote a secret: it is never logged or repeated.
                raise ProtocolViolation(f"the container sent a line that is not a protocol "
                                        f"message ({len(line)} bytes)") from exc
        return None

    def _read(self, timeout: float) -> None:
        readable, _, _ = select.select([self._sock], [], [], timeout)
        if not readable:
            return
        try:
            data = self._sock.recv(READ_BYTES)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return
        self._lines.extend(self._demux.feed(data))

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already disconnected
        self._sock.close()
        response = getattr(self._handle, "_response", None)
        if response is not None:
            response.close()
