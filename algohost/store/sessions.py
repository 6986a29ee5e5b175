"""Console sign-ins: a random session id (the cookie's only content) -> who signed in.

The record keeps the owner and the SHA-256 of the key used, never the key, so a revoked
key ends its sessions at the next request. Records expire on their own in Redis.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import redis

from algohost.clock import now_iso
from algohost.store import PREFIX, decode_value, encode_value, translate_errors


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    id: str
    owner: str
    key_sha256: str
    csrf_token: str  # every form carries it; compared in constant time
    created_at: str = ""

    def to_json(self) -> str:
        return encode_value({"owner": self.owner, "key_sha256": self.key_sha256,
                             "csrf_token": self.csrf_token, "created_at": self.created_at})

    @staticmethod
    def from_json(session_id: str, text: str) -> ConsoleSession:
        data = decode_value(text)
        return ConsoleSession(id=session_id, owner=str(data["owner"]),
                              key_sha256=str(data["key_sha256"]),
                              csrf_token=str(data["csrf_token"]),
                              created_at=str(data.get("created_at", "")))


class SessionStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.ttl_s = ttl_s

    @staticmethod
    def key(session_id: str) -> str:
        return f"{PREFIX}console:session:{session_id}"

    @translate_errors
    def create(self, owner: str, key_sha256: str) -> ConsoleSession:
        session = ConsoleSession(id=secrets.token_urlsafe(32), owner=owner,
                                 key_sha256=key_sha256, csrf_token=secrets.token_urlsafe(32),
                                 created_at=now_iso())
        self.redis.set(self.key(session.id), session.to_json(), ex=self.ttl_s)
        return session

    @translate_errors
    def get(self, session_id: str) -> ConsoleSession | None:
        if not session_id or len(session_id) > 128:
            return None
        raw = self.redis.get(self.key(session_id))
        return ConsoleSession.from_json(session_id, raw) if raw else None

    @translate_errors
    def delete(self, session_id: str) -> None:
        self.redis.delete(self.key(session_id))
