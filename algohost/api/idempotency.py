"""`Idempotency-Key` on submits: a retried request gets the record its first try made.

The views call `reserve` before they write anything and `release` when their request
fails before making something worth replaying; a replay is answered from the record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import request
from pydantic import BaseModel

from algohost.api.auth import current_owner
from algohost.api.routing import Header
from algohost.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest
from algohost.names import IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_PATTERN
from algohost.store.idempotency import (
    IN_FLIGHT_GRACE_S,
    IdempotencyKeys,
    Reservation,
    fingerprint,
)

log = logging.getLogger(__name__)
HEADER = "Idempotency-Key"
IDEMPOTENCY_HEADER = Header(
    HEADER, "A key of the client's choosing (a UUID) that makes a retry of this submit safe: "
            "the same key with the same request, from the same owner within the retention "
            "window, answers with the record the first request made instead of making "
            "another; with a different request it is refused (422 idempotency_key_reused)",
    "0b5e2f7c-6a1d-4c8e-9f3a-2d4b6c8e0f1a", pattern=IDEMPOTENCY_KEY_PATTERN)
REPLAYED_HEADER = {"Idempotent-Replayed": "`true` when the reply is the record an earlier "
                                          "request with the same Idempotency-Key made"}


def request_fingerprint(body: BaseModel) -> str:
    """What makes two submits the same one: their validated bodies, field by field."""
    return fingerprint(body.model_dump_json())


def requested_key() -> str | None:
    """The request's Idempotency-Key, if it sent one, checked against its grammar."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest(f"send one {HEADER} header, not {len(values)}")
    return IDEMPOTENCY_KEY.check(values[0], where=HEADER)


def reserve(keys: IdempotencyKeys, key: str, fingerprint: str, new_id: str) -> str | None:
    """None when `new_id` is now reserved (make the record); the earlier record's id when
    this request is a replay; a 422 or 409 when the key cannot be used for it."""
    claim = keys.reserve(current_owner(), key, fingerprint, new_id)
    if claim.state is Reservation.NEW:
        return None
    if claim.state is Reservation.REPLAY:
        return claim.id
    if claim.state is Reservation.MISMATCH:
        raise IdempotencyKeyReused(
            f"{HEADER} {key!r} was already used for a different request (its {keys.kind} "
            f"{claim.id}); use a new key for a new request", id=claim.id)
    raise IdempotencyKeyInUse(
        f"a request with {HEADER} {key!r} is under way; retry in a moment",
        retry_after_s=max(1, round(IN_FLIGHT_GRACE_S / 5)))


@contextmanager
def released_on_failure(keys: IdempotencyKeys, key: str | None, record_id: str
                        ) -> Iterator[None]:
    """Give the key back if making the record fails, so the client's retry can make it."""
    try:
        yield
    except BaseException:
        if key is not None:
            try:
                keys.release(current_owner(), key, record_id)
            except Exception:  # the request's own error matters more; the key expires
                log.exception("giving back %s %r failed", HEADER, key)
        raise
