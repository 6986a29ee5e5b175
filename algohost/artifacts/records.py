"""Artifact metadata in Redis, beside the other records: who holds which blob, and why it lives.

Bytes never pass through here. A blob may be held by several owners (each sees
only its own record and references); it becomes garbage when no reference is left,
and the time that happened is kept so collection can honour a grace period.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from algohost.store import PREFIX, lua, translate_errors

UNREFERENCED = f"{PREFIX}artifacts:unreferenced"
USAGE = f"{PREFIX}artifacts:usage"


@dataclass(frozen=True)
class Lineage:
    """Where a job's artifact came from: the build (code and models), the input, the job."""

    job: str
    algorithm: str
    build_id: str
    input_sha256: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lineage:
        return cls(job=str(data["job"]), algorithm=str(data["algorithm"]),
                   build_id=str(data["build_id"]), input_sha256=str(data["input_sha256"]))


@dataclass(frozen=True)
class ArtifactRecord:
    """One owner's record of one blob."""

    sha256: str
    owner: str
    name: str
    size: int
    media_type: str
    creator: str  # "upload" or "job:<id>"
    created_at: str
    lineage: Lineage | None = None
    references: tuple[str, ...] = field(default=())  # read from the reference set, never stored

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("references")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], references: tuple[str, ...] = ()) -> ArtifactRecord:
        lineage = data.get("lineage")
        return cls(sha256=str(data["sha256"]), owner=str(data["owner"]), name=str(data["name"]),
                   size=int(data["size"]), media_type=str(data["media_type"]),
                   creator=str(data["creator"]), created_at=str(data["created_at"]),
                   lineage=Lineage.from_dict(lineage) if lineage else None,
                   references=references)


def record_key(owner: str, digest: str) -> str:
    return f"{PREFIX}artifact:{owner}:{digest}"


def holders_key(digest: str) -> str:
    return f"{PREFIX}artifact:holders:{digest}"


def refs_key(digest: str) -> str:
    return f"{PREFIX}artifact:refs:{digest}"


def owner_index(owner: str) -> str:
    return f"{PREFIX}artifacts:owner:{owner}"


class ArtifactIndex:
    """Records, references and per-owner usage of blobs."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis: Any = client  # decodes to str
        self._add = self.redis.register_script(lua("artifact_add"))
        self._claim = self.redis.register_script(lua("artifact_claim"))
        self._unref = self.redis.register_script(lua("artifact_unreference"))

    @translate_errors
    def add(self, record: ArtifactRecord, now: float) -> bool:
        """Record that `record.owner` holds the blob; False when it already did."""
        keys = [record_key(record.owner, record.sha256), holders_key(record.sha256), USAGE,
                owner_index(record.owner), UNREFERENCED, refs_key(record.sha256)]
        args: list[str | int | float] = [json.dumps(record.to_dict()), record.owner,
                                         record.size, record.sha256, now]
        return bool(self._add(keys=keys, args=args))

    @translate_errors
    def get(self, owner: str, digest: str) -> ArtifactRecord | None:
        raw = self.redis.get(record_key(owner, digest))
        if raw is None:
            return None
        mine = f"{owner}:"
        references = tuple(sorted(ref[len(mine):] for ref in self.redis.smembers(refs_key(digest))
                                  if ref.startswith(mine)))
        return ArtifactRecord.from_dict(json.loads(raw), references)

    @translate_errors
    def list_for_owner(self, owner: str, limit: int) -> list[ArtifactRecord]:
        digests = self.redis.zrevrange(owner_index(owner), 0, limit - 1)
        return [r for r in (self.get(owner, d) for d in digests) if r is not None]

    @translate_errors
    def usage(self, owner: str) -> int:
        return int(self.redis.hget(USAGE, owner) or 0)

    @translate_errors
    def reference(self, owner: str, digest: str, ref: str) -> None:
        """`owner`'s `ref` (e.g. `job:j_1`, `model:iris@sha256:…`) keeps the blob alive."""
        pipe = self.redis.pipeline()
        pipe.sadd(refs_key(digest), f"{owner}:{ref}")
        pipe.zrem(UNREFERENCED, digest)
        pipe.execute()

    @translate_errors
    def unreference(self, owner: str, digest: str, ref: str, now: float) -> None:
        self._unref(keys=[refs_key(digest), UNREFERENCED], args=[digest, f"{owner}:{ref}", now])

    @translate_errors
    def references(self, digest: str) -> set[str]:
        """Every reference, all owners' (`owner:kind:id`); for collection only."""
        return set(self.redis.smembers(refs_key(digest)))

    @translate_errors
    def unreferenced_since(self, digest: str) -> float | None:
        score = self.redis.zscore(UNREFERENCED, digest)
        return None if score is None else float(score)

    @translate_errors
    def mark_unreferenced(self, digest: str, now: float) -> None:
        self.redis.zadd(UNREFERENCED, {digest: now}, nx=True)

    @translate_errors
    def claim_for_deletion(self, digest: str, cutoff: float) -> bool:
        return bool(self._claim(keys=[refs_key(digest), UNREFERENCED], args=[digest, cutoff]))

    @translate_errors
    def forget(self, digest: str) -> None:
        """Drop every owner's record of a deleted blob and give the bytes back to their quota."""
        for owner in self.redis.smembers(holders_key(digest)):
            raw = self.redis.get(record_key(owner, digest))
            pipe = self.redis.pipeline()
            if raw is not None:
                pipe.hincrby(USAGE, owner, -int(json.loads(raw)["size"]))
            pipe.delete(record_key(owner, digest))
            pipe.zrem(owner_index(owner), digest)
            pipe.execute()
        self.redis.delete(holders_key(digest), refs_key(digest))

    @translate_errors
    def prune_references(self, digest: str, alive: Callable[[str], bool], now: float) -> int:
        """Drop references whose holder is gone (a job record that expired); how many."""
        dropped = 0
        for ref in self.references(digest):
            owner, _, rest = ref.partition(":")
            if not alive(rest):
                self.unreference(owner, digest, rest, now)
                dropped += 1
        return dropped
