"""A watchdog for the worker's broker consumer.

After the broker's connection drops, Celery's consumer on the Redis transport can come
back connected yet never fetch again (celery #8030, #9054, #10205; kombu #2007 fixed one
cause, not every one): messages pile up while the worker idles. The watchdog notices it
— messages wait in this worker's queues, this worker has threads free, and it has received
nothing for a while — and makes the consumer reconnect, as after any connection loss. It
never takes, runs or acknowledges a message itself; what was lost meanwhile is the lease
reaper's (the job record, not the broker, is the truth).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import redis

from algohost.dispatch import queue_keys

log = logging.getLogger(__name__)

PATIENCE = 2  # checks in a row that see the stall before the consumer is made to reconnect


class ConsumerStalled(ConnectionError):
    """Raised inside the consumer's event loop: Celery treats it as a lost connection."""


class ConsumerWatchdog:
    """Counts what the consumer receives; `check` compares it with the queues' backlog."""

    def __init__(self, waiting: Callable[[], int], free_threads: Callable[[], int],
                 reconnect: Callable[[], None], patience: int = PATIENCE) -> None:
        self.waiting, self.free_threads, self.reconnect = waiting, free_threads, reconnect
        self.patience = patience
        self.received = 0
        self.reconnects = 0
        self._seen = 0
        self._stalled = 0

    def on_received(self) -> None:
        self.received += 1

    def check(self) -> bool:
        """One look; True when it made the consumer reconnect."""
        received, self._seen = self.received != self._seen, self.received
        try:
            waiting = self.waiting()
        except redis.RedisError:  # the broker is away: the consumer notices that itself
            self._stalled = 0
            return False
        if waiting == 0 or received or self.free_threads() <= 0:
            self._stalled = 0
            return False
        self._stalled += 1
        if self._stalled < self.patience:
            return False
        self._stalled = 0
        self.reconnects += 1
        log.warning("the broker consumer is stalled: %d messages wait in its queues, %d "
                    "threads are free, and nothing was received for %d checks; reconnecting",
                    waiting, self.free_threads(), self.patience)
        self.reconnect()
        return True

    def watch(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                self.check()
            except Exception:  # the watchdog must outlive whatever it watches
                log.exception("the consumer watchdog failed; watching on")


def queue_lengths(broker_url: str, queues: Sequence[str]) -> Callable[[], int] | None:
    """How many messages wait in `queues` on a Redis broker (None for another broker)."""
    if not broker_url.startswith(("redis://", "rediss://", "unix://")):
        return None
    client: Any = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)

    def waiting() -> int:
        pipe = client.pipeline(transaction=False)
        for name in queues:
            for key in queue_keys(name):  # kombu keeps a list per priority step
                pipe.llen(key)
        return int(sum(pipe.execute()))

    return waiting


def force_reconnect(consumer: Any) -> None:
    """Make the consumer's event loop raise a connection error, from any thread: Celery
    then closes the connection and opens a new one, with fresh channels."""

    def stalled() -> None:
        raise ConsumerStalled("no message received while messages waited")

    hub = getattr(consumer, "hub", None)
    if hub is None:
        log.error("the consumer runs without an event loop; it cannot be made to reconnect")
        return
    hub.call_soon(stalled)
