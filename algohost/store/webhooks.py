"""Webhook state in Redis: each owner's signing key (shown to its owner, not a Vault secret),
deliveries and every attempt. A delivery is made at most once per (subject, event), by
SET NX: a job canceled by the API, then stopped by its worker, sends one `completed`.
Pending deliveries are indexed by when their next attempt is due, so a sweep finds the
ones whose message was lost without scanning keys.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypedDict

import redis

from algohost.clock import iso, parse_iso
from algohost.store import PREFIX, RecordFields, encode_fields, encode_value, lua, translate_errors

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 bytes
PENDING_KEY = f"{PREFIX}webhooks:pending"  # delivery ids by when the next attempt is due


class DeliveryState(StrEnum):
    PENDING = "pending"  # an attempt is queued or scheduled
    DELIVERED = "delivered"
    DEAD = "dead"  # no attempt left, or one that must not be retried; can be redelivered


@dataclass(slots=True)
class DeliveryRecord:
    """One event of one subject on its way to a webhook, as stored (a hash of JSON text
    fields); its attempts are a list of their own. Unknown fields are skipped on reading."""

    id: str  # the webhook-id header, the same on every attempt
    subject: str  # "job:j_..." or "batch:b_..."
    owner: str
    event: str
    url: str
    body: str
    state: DeliveryState
    generation: int = 0  # redeliveries so far: attempts of an earlier round are stale
    attempts: int = 0
    round_start: int = 0  # attempts made before this round
    created_at: str = ""
    next_attempt_at: str | None = None
    last_error: str | None = None
    updated_at: str | None = None

    def to_redis(self) -> dict[str, str]:
        return DELIVERY_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> DeliveryRecord:
        return DELIVERY_FIELDS.decode(raw)


DELIVERY_FIELDS = RecordFields(DeliveryRecord, "delivery", typed={"state": DeliveryState})
_PENDING = encode_value(DeliveryState.PENDING.value)


class AttemptEntry(TypedDict):
    """One attempt, as logged: when, what the receiver answered, how long it took."""

    at: str
    status_code: int | None
    latency_ms: float
    error: str | None
    response_body: str


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._record = client.register_script(lua("delivery_record_attempt"))
        self._take_overdue = client.register_script(lua("delivery_take_overdue"))
        self._take_slot = client.register_script(lua("delivery_take_owner_slot"))

    @staticmethod
    def _secret_key(owner: str) -> str:
        return f"{PREFIX}webhooks:secret:{owner}"

    @staticmethod
    def key(delivery_id: str) -> str:
        return f"{PREFIX}delivery:{delivery_id}"

    @classmethod
    def attempts_key(cls, delivery_id: str) -> str:
        return cls.key(delivery_id) + ":attempts"

    @staticmethod
    def subject_key(subject: str) -> str:
        """Deliveries of one subject ("job:j_..." or "batch:b_..."), oldest first."""
        return f"{PREFIX}{subject}:webhooks"

    @staticmethod
    def sent_key(subject: str, event: str) -> str:
        return f"{PREFIX}{subject}:webhook:{event}"

    @classmethod
    def in_flight_key(cls, delivery_id: str, generation: int, attempt: int) -> str:
        return f"{cls.key(delivery_id)}:in-flight:{generation}:{attempt}"

    # Signing keys -----------------------------------------------------------------------

    @translate_errors
    def secret(self, owner: str) -> str:
        """The owner's signing key, made on first use."""
        key = self._secret_key(owner)
        self.redis.set(key, new_secret(), nx=True)
        return str(self.redis.get(key))

    @translate_errors
    def rotate_secret(self, owner: str) -> str:
        secret = new_secret()
        self.redis.set(self._secret_key(owner), secret)
        return secret

    # Deliveries -------------------------------------------------------------------------

    @translate_errors
    def create(self, subject: str, owner: str, event: str, url: str,
               body: str) -> DeliveryRecord | None:
        """A new pending delivery, or None when this (subject, event) already has one."""
        delivery_id = "msg_" + uuid.uuid4().hex
        if not self.redis.set(self.sent_key(subject, event), delivery_id, nx=True,
                              ex=self.retention_s):
            return None
        now = time.time()
        delivery = DeliveryRecord(id=delivery_id, subject=subject, owner=owner, event=event,
                                  url=url, body=body, state=DeliveryState.PENDING,
                                  created_at=iso(now), next_attempt_at=iso(now))
        pipe = self.redis.pipeline()
        pipe.hset(self.key(delivery_id), mapping=delivery.to_redis())
        pipe.expire(self.key(delivery_id), self.retention_s)
        pipe.rpush(self.subject_key(subject), delivery_id)
        pipe.expire(self.subject_key(subject), self.retention_s)
        pipe.zadd(PENDING_KEY, {delivery_id: now})
        pipe.execute()
        return delivery

    @translate_errors
    def get(self, delivery_id: str) -> DeliveryRecord | None:
        raw = self.redis.hgetall(self.key(delivery_id))
        return DeliveryRecord.from_redis(raw) if raw else None

    @translate_errors
    def attempts(self, delivery_id: str) -> list[AttemptEntry]:
        return [json.loads(item) for item in self.redis.lrange(self.attempts_key(delivery_id),
                                                                0, -1)]

    @translate_errors
    def for_subject(self, subject: str) -> list[tuple[DeliveryRecord, list[AttemptEntry]]]:
        """Every delivery of a subject, oldest first, each with its attempts."""
        deliveries = []
        for delivery_id in self.redis.lrange(self.subject_key(subject), 0, -1):
            delivery = self.get(delivery_id)
            if delivery is not None:
                deliveries.append((delivery, self.attempts(delivery_id)))
        return deliveries

    @translate_errors
    def record_attempt(self, delivery_id: str, generation: int, attempt: AttemptEntry,
                       state: DeliveryState, next_attempt_at: str | None) -> bool:
        """Log the attempt; False if a redelivery superseded it (the state is then left alone)."""
        fields = encode_fields({"state": state.value, "next_attempt_at": next_attempt_at,
                                "last_error": attempt["error"], "updated_at": attempt["at"]})
        due = parse_iso(next_attempt_at) if state is DeliveryState.PENDING and next_attempt_at \
            else None
        args: list[Any] = [encode_value(attempt), str(generation),
                           self.retention_s, delivery_id, "" if due is None else repr(due)]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.key(delivery_id), self.attempts_key(delivery_id), PENDING_KEY]
        return bool(self._record(keys=keys, args=args) == 1)

    @translate_errors
    def begin_attempt(self, delivery_id: str, generation: int, attempt: int,
                      hold_s: int) -> bool:
        """True for the one message that makes this attempt; False while a copy of it runs.

        The mark expires after `hold_s`, so an attempt whose worker died can be made again."""
        return bool(self.redis.set(self.in_flight_key(delivery_id, generation, attempt), "1",
                                   nx=True, ex=hold_s))

    @translate_errors
    def end_attempt(self, delivery_id: str, generation: int, attempt: int) -> None:
        """Drop the in-flight mark of an attempt that was not made after all."""
        self.redis.delete(self.in_flight_key(delivery_id, generation, attempt))

    @staticmethod
    def busy_key(owner: str) -> str:
        """The owner's attempts under way, by when their slot expires."""
        return f"{PREFIX}webhooks:busy:{owner}"

    @translate_errors
    def take_owner_slot(self, owner: str, slot: str, limit: int, hold_s: int) -> bool:
        """True when fewer than `limit` of the owner's attempts are under way (this one joins
        them until released, or for `hold_s` at most)."""
        now = time.time()
        return bool(self._take_slot(keys=[self.busy_key(owner)],
                                    args=[slot, repr(now), limit, repr(now + hold_s), hold_s]))

    @translate_errors
    def release_owner_slot(self, owner: str, slot: str) -> None:
        self.redis.zrem(self.busy_key(owner), slot)

    @translate_errors
    def postpone(self, delivery_id: str, due: float) -> None:
        """A deferred attempt is due again at `due`, so the overdue sweep leaves it alone."""
        self.redis.zadd(PENDING_KEY, {delivery_id: due}, xx=True)

    @translate_errors
    def take_overdue(self, cutoff: float, due_again_at: float,
                     limit: int = 1000) -> list[tuple[str, int, int]]:
        """Pending deliveries whose next attempt was due before `cutoff`, as (id, generation,
        attempt); each counts as due again at `due_again_at`, so concurrent sweeps take it once."""
        taken = []
        for delivery_id in self.redis.zrangebyscore(PENDING_KEY, "-inf", cutoff, start=0,
                                                    num=limit):
            numbers = self._take_overdue(keys=[PENDING_KEY, self.key(delivery_id)],
                                         args=[delivery_id, repr(cutoff), repr(due_again_at),
                                               _PENDING])
            if numbers:
                taken.append((delivery_id, int(numbers[0]), int(numbers[1])))
        return taken

    @translate_errors
    def restart(self, delivery_id: str) -> DeliveryRecord:
        """Start the schedule again; scheduled attempts of earlier rounds become stale."""
        delivery = self.get(delivery_id)
        if delivery is None:
            raise KeyError(delivery_id)
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(delivery_id), "generation", 1)
        pipe.hset(self.key(delivery_id), mapping=encode_fields({
            "state": DeliveryState.PENDING.value, "round_start": delivery.attempts,
            "next_attempt_at": iso(now)}))
        pipe.zadd(PENDING_KEY, {delivery_id: now})
        generation, _, _ = pipe.execute()
        return replace(delivery, generation=int(generation), round_start=delivery.attempts,
                       state=DeliveryState.PENDING, next_attempt_at=iso(now))
