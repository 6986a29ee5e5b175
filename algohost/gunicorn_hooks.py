"""Server hooks for the API's gunicorn (`gunicorn -c python:algohost.gunicorn_hooks`).

Imported by gunicorn's master before the workers patch the standard library for gevent,
so this module imports nothing of algohost's or anyone's beyond the standard library.

A keep-alive connection stays with the API process that accepted it. A client that
opens its connections at once (a pool of eight, say) has them split between the
processes by chance: 6 to 2 as often as 4 to 4 on two processes, and then one process,
so one core, serves three quarters of its calls while the other idles; the same client's
throughput varied 1.7x from run to run. So a connection is closed after
KEEPALIVE_REQUESTS requests (`Connection: close` on the last answer, as nginx's
keepalive_requests does): the client opens a new one, which the process least busy is
the first to accept, and the split evens out within a few hundred calls.
"""

from __future__ import annotations

from typing import Any

KEEPALIVE_REQUESTS = 100


def pre_request(worker: Any, req: Any) -> None:
    """gunicorn's hook before each request; `req.req_number` counts this connection's."""
    if req.req_number % KEEPALIVE_REQUESTS == 0:
        req.must_close = True
