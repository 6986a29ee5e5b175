# mypy: disallow-untyped-calls=False
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

import time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

TRANSPORT = "algohost.broker:Transport"
SCHEMES = ("redis://", "rediss://")


# The unacked-message bookkeeping kombu does with a MULTI/EXEC pipeline for every message
# taken and every ack, as one script each: the same two writes, as atomic, for one command.
# redis-py's pipeline machinery was a fifth of the worker consumer's time per message.
_INDEX = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
"""
_UNINDEX = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
"""


class QoS(kombu_redis.QoS):
    def append(self, message: Any, delivery_tag: str) -> None:
        if self.channel.global_keyprefix:  # prefixed keys: kombu's own way
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        self.channel.scripts(_INDEX)(
            keys=[self.unacked_index_key, self.unacked_key],
            args=[repr(time.time()), delivery_tag,
                  dumps([message._raw, delivery["exchange"], delivery["routing_key"]])])
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self.channel.global_keyprefix:
            super().ack(delivery_tag)
            return
        self.channel.scripts(_UNINDEX)(keys=[self.unacked_index_key, self.unacked_key],
                                       args=[delivery_tag])
        virtual.QoS.ack(self, delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared: tuple[Any, Any] | None = None  # (pool, client made over it)
    _scripts: dict[str, Any] | None = None

    def scripts(self, source: str) -> Any:
        """The script `source`, registered once with this channel's shared client."""
        client = self._create_client()
        cache = self._scripts
        if cache is None or cache.get("") is not client:
            cache = self._scripts = {"": client}
        script = cache.get(source)
        if script is None:
            script = cache[source] = client.register_script(source)
        return script

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP connection: kombu keeps it per channel
            return super()._create_client(asynchronous=True)
        pool, shared = self.pool, self._shared
        if shared is None or shared[0] is not pool:
            shared = self._shared = (pool, super()._create_client())
        return shared[1]


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> str | None:
    """The transport class to name in Celery's `broker_transport` (None: kombu's choice)."""
    return TRANSPORT if broker_url.startswith(SCHEMES) else None
