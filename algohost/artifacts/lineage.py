"""Lineage of job artifacts: which build, on which input, in which job, produced which file.

"The plot for model X with params P on data D" is one query: the build names the code
and its pinned models, the input digest names the parameters and data. Entries whose
blob has been collected are dropped when a query meets them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import redis

from algohost.store import PREFIX, translate_errors


def input_digest(value: Any) -> str:
    """sha256 of the input's canonical JSON (sorted keys, no spaces): what callers query by."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LineageEntry:
    job: str
    name: str
    sha256: str
    size: int
    media_type: str
    algorithm: str  # the exact build: owner/name@1.2.3
    build_id: str
    input_sha256: str
    created_at: str

    @property
    def ident(self) -> str:
        return f"{self.job}/{self.name}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LineageEntry:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


class LineageIndex:
    def __init__(self, client: redis.Redis) -> None:
        self.redis: Any = client

    @staticmethod
    def _entries(owner: str) -> str:
        return f"{PREFIX}lineage:{owner}"

    @staticmethod
    def _by(owner: str, kind: str, value: str) -> str:
        return f"{PREFIX}lineage:{owner}:{kind}:{value}"

    @translate_errors
    def add(self, owner: str, entry: LineageEntry) -> None:
        name_only = entry.algorithm.partition("@")[0]
        pipe = self.redis.pipeline()
        pipe.hset(self._entries(owner), entry.ident, json.dumps(asdict(entry)))
        for kind, value in (("algorithm", entry.algorithm), ("algorithm", name_only),
                            ("input", entry.input_sha256), ("job", entry.job)):
            pipe.sadd(self._by(owner, kind, value), entry.ident)
        pipe.execute()

    @translate_errors
    def query(self, owner: str, *, algorithm: str | None = None,
              input_sha256: str | None = None, job: str | None = None,
              limit: int = 100) -> list[LineageEntry]:
        keys = [self._by(owner, kind, value) for kind, value in
                (("algorithm", algorithm), ("input", input_sha256), ("job", job)) if value]
        if not keys:
            return []
        idents = sorted(self.redis.sinter(keys))
        if not idents:
            return []
        raw = self.redis.hmget(self._entries(owner), idents)
        entries = [LineageEntry.from_dict(json.loads(r)) for r in raw if r is not None]
        entries.sort(key=lambda e: (e.created_at, e.ident), reverse=True)
        return entries[:limit]

    @translate_errors
    def remove(self, owner: str, entry: LineageEntry) -> None:
        name_only = entry.algorithm.partition("@")[0]
        pipe = self.redis.pipeline()
        pipe.hdel(self._entries(owner), entry.ident)
        for kind, value in (("algorithm", entry.algorithm), ("algorithm", name_only),
                            ("input", entry.input_sha256), ("job", entry.job)):
            pipe.srem(self._by(owner, kind, value), entry.ident)
        pipe.execute()
