"""API keys: created for an owner, stored only as SHA-256 hashes.

A key is shown once, at creation; the store can tell who owns a presented key
but can never give a key back.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from algohost.clock import now_iso
from algohost.names import validate_owner
from algohost.store import PREFIX, decode_value, encode_value, translate_errors

KEY_PREFIX = "ak_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What is kept of a key, under its hash: who owns it, when it was made, how it starts.

    Stored as one JSON object per key in a single hash; unknown members are skipped."""

    owner: str
    created_at: str = ""
    prefix: str = ""  # the key's first characters, so its owner can tell keys apart

    def to_json(self) -> str:
        return encode_value({"owner": self.owner, "created_at": self.created_at,
                             "prefix": self.prefix})

    @staticmethod
    def from_json(text: str) -> ApiKeyRecord:
        data = decode_value(text)
        return ApiKeyRecord(owner=str(data["owner"]), created_at=str(data.get("created_at", "")),
                            prefix=str(data.get("prefix", "")))


class KeyStore:
    HASH = f"{PREFIX}keys"

    def __init__(self, client: redis.Redis, cache_s: float = 0.0) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        # The API may remember a key's owner briefly: a revoked key then works for
        # at most cache_s more seconds, and every call saves a round trip.
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, str]] = {}

    @translate_errors
    def create(self, owner: str) -> str:
        validate_owner(owner)
        key = new_key()
        record = ApiKeyRecord(owner=owner, created_at=now_iso(), prefix=key[:7])
        self.redis.hset(self.HASH, hash_key(key), record.to_json())
        return key

    @translate_errors
    def owner_of(self, key: str) -> str | None:
        return self.owner_of_digest(hash_key(key))

    @translate_errors
    def owner_of_digest(self, digest: str) -> str | None:
        """The owner of the key with this SHA-256 (what a console session keeps)."""
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        raw = self.redis.hget(self.HASH, digest)
        if not raw:
            return None
        owner = ApiKeyRecord.from_json(raw).owner
        if self.cache_s > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (time.monotonic() + self.cache_s, owner)
        return owner

    @translate_errors
    def revoke(self, key: str) -> bool:
        self._cache.pop(hash_key(key), None)
        return bool(self.redis.hdel(self.HASH, hash_key(key)))
