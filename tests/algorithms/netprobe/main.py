"""Listens, or connects once and says how it went: the egress tests' two ends.

Tests aim it only at the project's own containers and the host side of its own
bridge, never at a metadata, LAN or public address.
"""

import errno
import socket
import threading

GREETING = b"hello from the listener\n"


def _serve(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(GREETING)


def _listen(port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen()
    threading.Thread(target=_serve, args=(listener,), daemon=True).start()
    return {"address": socket.gethostbyname(socket.gethostname()), "port": port}


def _connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=10) as conn:
            return {"connected": True, "data": conn.recv(100).decode()}
    except OSError as exc:
        code = exc.errno or 0
        return {"connected": False, "errno": code, "error": errno.errorcode.get(code, str(exc))}


def apply(request):
    if "listen" in request:
        return _listen(int(request["listen"]))
    return _connect(request["host"], int(request["port"]))
