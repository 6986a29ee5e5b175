import errno
import socket

# TEST-NET-1 (RFC 5737): never routed, so even a misconfigured sandbox reaches nobody.
UNROUTABLE = ("192.0.2.1", 9)


def apply(input):
    names = [name for _, name in socket.if_nameindex()]
    result = {"interfaces": names, "errno": None, "error": None}
    if names != ["lo"]:
        return result  # a real network is present: do not try to connect anywhere
    try:
        socket.create_connection(UNROUTABLE, timeout=2).close()
    except OSError as exc:
        result["errno"] = exc.errno
        result["error"] = errno.errorcode.get(exc.errno or 0, str(exc))
    return result
