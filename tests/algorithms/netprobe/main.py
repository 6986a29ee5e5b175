"""Listens, connects once and says how it went, or reports its IPv6: the egress tests' ends.

Tests aim it only at the project's own containers and the host side of its own
bridge, never at a metadata, LAN or public address.
"""

import errno
import os
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


def _inet6():
    """The container's IPv6 addresses and each interface's switch, as its kernel says."""
    try:
        with open("/proc/net/if_inet6") as table:
            addresses = [line.split() for line in table if line.strip()]
    except FileNotFoundError:  # a kernel without IPv6
        addresses = []
    conf = "/proc/sys/net/ipv6/conf"
    switches = {}
    for name in sorted(os.listdir(conf)) if os.path.isdir(conf) else []:
        with open(f"{conf}/{name}/disable_ipv6") as switch:
            switches[name] = switch.read().strip()
    return {"addresses": [{"address": a[0], "interface": a[-1]} for a in addresses],
            "disable_ipv6": switches}


def apply(request):
    if "inet6" in request:
        return _inet6()
    if "listen" in request:
        return _listen(int(request["listen"]))
    return _connect(request["host"], int(request["port"]))
