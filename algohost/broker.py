"""The Redis transport Celery sends and takes messages through, with one change.

kombu's Redis channel builds a new redis-py client object for every publish, every ack
and every step of its unacked-message bookkeeping; redis-py 8's constructor (response
callbacks, event dispatcher) costs more than the command it then sends (~63 µs against
~53 µs for a PING here), and the worker's consumer thread paid it three to five times per
job while holding the GIL that every call's thread needs. A redis-py client is safe to
share between threads (it takes a connection from its pool for each command and keeps no
other state), so this channel keeps one per connection pool and builds a new one only when
the pool is replaced after a reconnect. Pipelines are still made fresh for every use.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "algohost.broker:Transport"
SCHEMES = ("redis://", "rediss://")


class Channel(kombu_redis.Channel):
    _shared: tuple[Any, Any] | None = None  # (pool, client made over it)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP connection: kombu keeps it per channel
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool, shared = self.pool, self._shared
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """The transport class to name in Celery's `broker_transport` (None: kombu's choice)."""
    return TRANSPORT if broker_url.startswith(SCHEMES) else None
