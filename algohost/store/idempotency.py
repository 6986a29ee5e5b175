"""Idempotency keys: a client's `Idempotency-Key` names the one record its submit made.

A key belongs to the owner who sent it and lives `ttl_s`; it remembers a fingerprint of
the request, so the same key with another body is refused, never silently replayed.
It never stores the request or the reply: the record it names is the answer.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from algohost.store import PREFIX, lua, translate_errors

# A reservation younger than this whose record is not written yet belongs to a request
# still under way; older, its request died between the two writes and a retry takes it.
IN_FLIGHT_GRACE_S = 5.0


class Reservation(StrEnum):
    NEW = "new"              # reserved for the id given: make the record under it
    REPLAY = "replay"        # the same request was made before: answer with its record
    MISMATCH = "mismatch"    # the key was used for a different request
    IN_FLIGHT = "in_flight"  # the same request is being made right now


@dataclass(frozen=True)
class Claim:
    state: Reservation
    id: str


def fingerprint(*parts: str | bytes) -> str:
    """A digest of what makes two requests the same one (parts kept apart)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


class IdempotencyKeys:
    """Reservations of one kind of record (jobs, batches), keyed by owner and key."""

    def __init__(self, client: redis.Redis, kind: str, record_prefix: str, ttl_s: int) -> None:
        self.redis: Any = client
        self.kind, self.record_prefix, self.ttl_s = kind, record_prefix, ttl_s
        self.clock: Callable[[], float] = time.time
        self._reserve = client.register_script(lua("idempotency_reserve"))
        self._release = client.register_script(lua("idempotency_release"))

    def key(self, owner: str, idempotency_key: str) -> str:
        return f"{PREFIX}idem:{self.kind}:{owner}:{idempotency_key}"

    @translate_errors
    def reserve(self, owner: str, idempotency_key: str, request_fingerprint: str,
                new_id: str) -> Claim:
        state, found = self._reserve(
            keys=[self.key(owner, idempotency_key)],
            args=[request_fingerprint, new_id, repr(self.clock()), self.ttl_s,
                  self.record_prefix, repr(IN_FLIGHT_GRACE_S)])
        return Claim(Reservation(state), str(found))

    @translate_errors
    def release(self, owner: str, idempotency_key: str, record_id: str) -> None:
        self._release(keys=[self.key(owner, idempotency_key)], args=[record_id])
