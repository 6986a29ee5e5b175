"""One subscription per process to job completions, fanned out to every local waiter.

A `Prefer: wait` caller registers an event here and sleeps on it, holding no Redis
connection: the transition script publishes each finished job's id, and this process's
one listener wakes the callers waiting on it. It never decides anything: a woken caller
reads the job record, which stays the truth, and a caller re-reads it now and then anyway.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from algohost.store import PREFIX

log = logging.getLogger(__name__)

CHANNEL = f"{PREFIX}jobs:done"  # the transition script publishes terminal job ids here
RECONNECT_S = 0.5


_SHARED: dict[str, CompletionWaiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_waiter(redis_url: str) -> CompletionWaiter:
    """The process's one waiter for the Redis at `redis_url`, whatever number of apps the
    process makes (tests make many): one subscription each, not one per app."""
    with _SHARED_LOCK:
        if redis_url not in _SHARED:
            _SHARED[redis_url] = CompletionWaiter(redis_url)
        return _SHARED[redis_url]


class CompletionWaiter:
    """The process's listener on CHANNEL; started on first use, again after a fork."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._waiting: dict[str, set[threading.Event]] = {}
        self._ready = threading.Event()
        self._pid: int | None = None
        self._closed = False
        self._pubsub: Any = None
        # Named, so an operator (or a test) can find the listener in CLIENT LIST.
        self.client_name = f"algohost-completions-{os.getpid()}-{id(self):x}"

    def close(self) -> None:
        """Stop listening (tests; a process that exits needs nothing of this)."""
        self._closed = True
        pubsub = self._pubsub
        if pubsub is not None:
            try:
                pubsub.unsubscribe()
            except (redis.RedisError, OSError):
                pass

    @property
    def ready(self) -> bool:
        """True while subscribed: a completion published now will be heard."""
        return self._ready.is_set()

    def wait_ready(self, timeout_s: float) -> bool:
        self._start()
        return self._ready.wait(timeout_s)

    @contextmanager
    def watching(self, job_id: str) -> Iterator[threading.Event]:
        """An event set when `job_id` is published as finished, or when the listener
        reconnected and may have missed it: either way, re-read the record."""
        self._start()
        event = threading.Event()
        with self._lock:
            self._waiting.setdefault(job_id, set()).add(event)
        try:
            yield event
        finally:
            with self._lock:
                events = self._waiting.get(job_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiting[job_id]

    @property
    def waiters(self) -> int:
        with self._lock:
            return sum(len(events) for events in self._waiting.values())

    def _start(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        with self._lock:
            if self._pid == pid:
                return
            # A forked child inherits the parent's state but not its listener thread.
            self._pid, self._ready = pid, threading.Event()
            threading.Thread(target=self._listen_forever, name="algohost-completions",
                             daemon=True).start()

    def _listen_forever(self) -> None:
        while not self._closed:
            try:
                self._listen()
            except (redis.RedisError, OSError) as exc:
                log.warning("job completions: %s; listening again", exc)
            finally:
                self._ready.clear()
                self._wake_all()  # whatever was published while we were away
            time.sleep(RECONNECT_S)

    def _listen(self) -> None:
        # No read timeout: the subscription is idle for as long as nothing finishes;
        # keepalive and health checks notice a dead server instead.
        client: Any = redis.Redis.from_url(self.redis_url, decode_responses=True,
                                           socket_timeout=None, socket_connect_timeout=5,
                                           socket_keepalive=True, health_check_interval=30,
                                           client_name=self.client_name)
        pubsub = self._pubsub = client.pubsub()
        try:
            pubsub.subscribe(CHANNEL)
            for message in pubsub.listen():
                if self._closed:
                    return
                if message["type"] == "message":
                    self._wake(str(message["data"]))
                elif message["type"] == "subscribe":
                    self._ready.set()
                    self._wake_all()
        finally:
            self._pubsub = None
            pubsub.close()
            client.close()

    def _wake(self, job_id: str) -> None:
        with self._lock:
            events = list(self._waiting.get(job_id, ()))
        for event in events:
            event.set()

    def _wake_all(self) -> None:
        with self._lock:
            events = [event for group in self._waiting.values() for event in group]
        for event in events:
            event.set()
