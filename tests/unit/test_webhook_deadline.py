"""A webhook attempt has one deadline in all: a receiver that trickles its answer a byte
at a time, each byte well within a per-read timeout, loses the connection at the deadline."""

import socket
import threading

import pytest

from algohost.webhooks.delivery import HttpPoster

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class TricklingReceiver:
    """Accepts one connection, reads the request, then sends one byte per `gap_s`."""

    def __init__(self, gap_s: float) -> None:
        self.gap_s = gap_s
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.sent = 0
        self.cut = threading.Event()  # the poster hung up before the whole answer went out
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            read_request(conn)
            for byte in ANSWER:
                if self.stop.wait(self.gap_s):
                    return
                try:
                    conn.sendall(bytes([byte]))
                    self.sent += 1
                except OSError:
                    self.cut.set()
                    return
                try:
                    if conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        self.cut.set()  # the peer closed its end
                        return
                except BlockingIOError:
                    pass  # nothing to read: the peer is still there

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


def read_request(conn: socket.socket) -> None:
    """All of it: closing with unread bytes would reset the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += conn.recv(65536)


@pytest.fixture
def trickling():
    receiver = TricklingReceiver(gap_s=0.2)
    yield receiver
    receiver.close()


def test_a_trickling_receiver_is_cut_off_at_the_attempts_deadline(trickling):
    # Each byte comes within the per-read timeout; the whole answer would take 9 s.
    result = HttpPoster(allow_private=True, timeout_s=1.0).post(trickling.url, b"{}", {})
    assert not result.ok
    assert result.error == "the receiver took longer than 1 s in all"
    assert result.status_code is None
    assert trickling.sent < len(ANSWER)


def test_a_receiver_that_answers_in_time_is_not_cut(trickling):
    trickling.gap_s = 0.0
    result = HttpPoster(allow_private=True, timeout_s=10.0).post(trickling.url, b"{}", {})
    assert result.ok, result
    assert result.response_body == "ok"
