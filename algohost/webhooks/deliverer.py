"""One scheduled attempt of a delivery: sign, send, record, and say when to try again.

A message that no longer matches the delivery (redelivered since, already attempted,
delivered) does nothing, nor does a copy of an attempt already under way, so duplicated
or stale broker messages never send twice.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from algohost.clock import iso, now_iso
from algohost.store.webhooks import AttemptEntry, DeliveryRecord, DeliveryState, WebhookStore
from algohost.webhooks.delivery import TIMEOUT_S, AttemptResult
from algohost.webhooks.schedule import next_delay
from algohost.webhooks.signing import signature_headers

log = logging.getLogger(__name__)



def in_flight_s(deadline_s: float) -> int:
    """How long an attempt's in-flight mark is held: past the poster's total deadline, so
    the mark outlasts the attempt and no copy of it (the overdue sweep's, a redelivered
    message) runs beside it; yet an attempt whose worker died is made again."""
    return int(2 * deadline_s) + 1


IN_FLIGHT_S = in_flight_s(TIMEOUT_S)


class Poster(Protocol):
    timeout_s: float  # the most one post may take in all, not per read

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult: ...


class Defer(Protocol):
    def __call__(self, delivery_id: str, generation: int, attempt: int,
                 countdown_s: float = 0.0) -> None: ...


# How long an attempt waits for its owner's slot to free: short against the 15 s an attempt
# may take, long enough that waiting attempts do not spin on the queue.
DEFER_S = 1.0


class Deliverer:
    """Makes attempts; with `owner_slots`, at most that many of one owner's attempts are
    under way at once (across workers), so one owner's slow receiver holds at most that
    many delivery threads and never delays other owners' deliveries. An attempt over the
    limit goes back to the queue through `defer`, unspent."""

    def __init__(self, store: WebhookStore, poster: Poster, schedule: Sequence[float],
                 rand: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time,
                 owner_slots: int = 0, defer: Defer | None = None) -> None:
        self.store, self.poster, self.schedule = store, poster, tuple(schedule)
        self.rand, self.clock = rand, clock
        self.owner_slots, self.defer = owner_slots, defer

    def attempt(self, delivery_id: str, generation: int, attempt: int) -> float | None:
        """Make attempt number `attempt` (0-based, over the delivery's life).

        Returns the delay before the next attempt, or None when there is none to make."""
        delivery = self.store.get(delivery_id)
        if delivery is None:
            log.info("delivery %s has expired; dropping", delivery_id)
            return None
        if (delivery.state is not DeliveryState.PENDING or delivery.generation != generation
                or delivery.attempts != attempt):
            log.info("stale message for delivery %s; dropping", delivery_id)
            return None
        hold_s = in_flight_s(self.poster.timeout_s)
        if not self.store.begin_attempt(delivery_id, generation, attempt, hold_s):
            log.info("attempt %d of delivery %s is under way; dropping a copy", attempt,
                     delivery_id)
            return None
        if self.owner_slots <= 0 or self.defer is None:
            return self._post(delivery, generation, attempt)
        owner, slot = delivery.owner, f"{delivery_id}:{generation}:{attempt}"
        if not self.store.take_owner_slot(owner, slot, self.owner_slots, hold_s):
            # Not begun after all: the deferred message must find the attempt free.
            self.store.end_attempt(delivery_id, generation, attempt)
            self.store.postpone(delivery_id, self.clock() + DEFER_S)
            self.defer(delivery_id, generation, attempt, DEFER_S)
            return None
        try:
            return self._post(delivery, generation, attempt)
        finally:
            self.store.release_owner_slot(owner, slot)

    def _post(self, delivery: DeliveryRecord, generation: int, attempt: int) -> float | None:
        delivery_id = delivery.id
        body = delivery.body
        headers = {
            **signature_headers(self.store.secret(delivery.owner), delivery_id, self.clock(),
                                body),
            "Content-Type": "application/json",
            "algohost-event": f"{delivery.subject.split(':', 1)[0]}.{delivery.event}",
        }
        at = now_iso()
        result = self.poster.post(delivery.url, body.encode(), headers)
        record: AttemptEntry = {"at": at, "status_code": result.status_code,
                                "latency_ms": result.latency_ms, "error": result.error,
                                "response_body": result.response_body}
        delay = None
        if result.ok:
            state = DeliveryState.DELIVERED
        else:
            in_round = attempt + 1 - delivery.round_start
            if not result.refused:
                delay = next_delay(in_round, self.schedule, result.status_code,
                                   result.retry_after, self.rand, self.clock)
            state = DeliveryState.PENDING if delay is not None else DeliveryState.DEAD
        next_at = iso(self.clock() + delay) if delay is not None else None
        if not self.store.record_attempt(delivery_id, generation, record, state, next_at):
            return None  # redelivered meanwhile: the new round schedules its own attempts
        if state is DeliveryState.DEAD:
            log.warning("delivery %s of %s is dead after %d attempts: %s", delivery_id,
                        delivery.subject, attempt + 1, result.error)
        return delay
