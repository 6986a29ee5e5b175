"""Webhook state in Redis: each owner's signing key (shown to its owner, not a Vault secret),
deliveries and every attempt. A delivery is made at most once per (subject, event), by
SET NX: a job canceled by the API, then stopped by its worker, sends one `completed`.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from enum import StrEnum
from typing import Any

import redis

from algohost.clock import now_iso
from algohost.store import PREFIX, decode_fields, encode_fields, translate_errors

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks asks for 24 to 64 bytes


class DeliveryState(StrEnum):
    PENDING = "pending"  # an attempt is queued or scheduled
    DELIVERED = "delivered"
    DEAD = "dead"  # no attempt left, or one that must not be retried; can be redelivered


# KEYS: delivery hash, attempts list. ARGV: attempt JSON, generation, retention, then
# field/value pairs. The attempt is always logged; the delivery moves on only if no
# redelivery started a new round while the attempt was in flight.
_RECORD = """
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if redis.call('HGET', KEYS[1], 'generation') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


class WebhookStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._record = client.register_script(_RECORD)

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
               body: str) -> dict[str, Any] | None:
        """A new pending delivery, or None when this (subject, event) already has one."""
        delivery_id = "msg_" + uuid.uuid4().hex
        if not self.redis.set(self.sent_key(subject, event), delivery_id, nx=True,
                              ex=self.retention_s):
            return None
        delivery = {"id": delivery_id, "subject": subject, "owner": owner, "event": event,
                    "url": url, "body": body, "state": DeliveryState.PENDING.value,
                    "generation": 0, "attempts": 0, "round_start": 0,
                    "created_at": now_iso(), "next_attempt_at": now_iso(), "last_error": None}
        pipe = self.redis.pipeline()
        pipe.hset(self.key(delivery_id), mapping=encode_fields(delivery))
        pipe.expire(self.key(delivery_id), self.retention_s)
        pipe.rpush(self.subject_key(subject), delivery_id)
        pipe.expire(self.subject_key(subject), self.retention_s)
        pipe.execute()
        return delivery

    @translate_errors
    def get(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.key(delivery_id))
        return decode_fields(raw) if raw else None

    @translate_errors
    def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.redis.lrange(self.attempts_key(delivery_id),
                                                                0, -1)]

    @translate_errors
    def for_subject(self, subject: str) -> list[dict[str, Any]]:
        """Every delivery of a subject, oldest first, each with its attempts."""
        deliveries = []
        for delivery_id in self.redis.lrange(self.subject_key(subject), 0, -1):
            delivery = self.get(delivery_id)
            if delivery is not None:
                delivery["attempt_log"] = self.attempts(delivery_id)
                deliveries.append(delivery)
        return deliveries

    @translate_errors
    def record_attempt(self, delivery_id: str, generation: int, attempt: dict[str, Any],
                       state: DeliveryState, next_attempt_at: str | None) -> bool:
        """Log the attempt; False if a redelivery superseded it (the state is then left alone)."""
        fields = encode_fields({"state": state.value, "next_attempt_at": next_attempt_at,
                          "last_error": attempt.get("error"), "updated_at": attempt["at"]})
        args: list[Any] = [json.dumps(attempt, separators=(",", ":")), str(generation),
                           self.retention_s]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.key(delivery_id), self.attempts_key(delivery_id)]
        return bool(self._record(keys=keys, args=args) == 1)

    @translate_errors
    def restart(self, delivery_id: str) -> dict[str, Any]:
        """Start the schedule again; scheduled attempts of earlier rounds become stale."""
        delivery = self.get(delivery_id)
        if delivery is None:
            raise KeyError(delivery_id)
        pipe = self.redis.pipeline()
        pipe.hincrby(self.key(delivery_id), "generation", 1)
        pipe.hset(self.key(delivery_id), mapping=encode_fields({
            "state": DeliveryState.PENDING.value, "round_start": delivery["attempts"],
            "next_attempt_at": now_iso()}))
        generation, _ = pipe.execute()
        return {**delivery, "generation": int(generation), "round_start": delivery["attempts"],
                "state": DeliveryState.PENDING.value}
