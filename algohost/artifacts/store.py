"""The artifact store: blobs on an fsspec filesystem plus their records in Redis.

Everything that keeps or serves bytes for an owner goes through `ArtifactStore`, which
charges the owner's quota while it streams and never reads a blob whole.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import redis

from algohost.artifacts.blobs import BlobStore, read_chunks
from algohost.artifacts.records import ArtifactIndex, ArtifactRecord, Lineage
from algohost.clock import now_iso
from algohost.config import Settings
from algohost.errors import ArtifactNotFound, BlobTooLarge, QuotaExceeded

DEFAULT_MEDIA_TYPE = "application/octet-stream"


class ArtifactStore:
    def __init__(self, blobs: BlobStore, index: ArtifactIndex, quota_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.blobs, self.index, self.quota_bytes, self.clock = blobs, index, quota_bytes, clock

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> ArtifactStore:
        return cls(BlobStore(settings.artifact_location), ArtifactIndex(client),
                   settings.artifact_quota_bytes)

    def room(self, owner: str) -> int:
        return max(0, self.quota_bytes - self.index.usage(owner))

    def put(self, owner: str, chunks: Iterable[bytes], *, name: str,
            media_type: str = DEFAULT_MEDIA_TYPE, creator: str = "upload",
            lineage: Lineage | None = None, limit: int | None = None) -> ArtifactRecord:
        """Stream content in, within the owner's quota (and `limit`), and record it."""
        room = self.room(owner)
        cap = room if limit is None else min(room, limit)
        try:
            written = self.blobs.put(chunks, cap)
        except BlobTooLarge as exc:
            if cap == room:
                raise QuotaExceeded(f"{owner} has {room} bytes of artifact quota left",
                                   limit=self.quota_bytes, left=room) from exc
            raise
        record = ArtifactRecord(sha256=written.digest, owner=owner, name=name,
                                size=written.size, media_type=media_type or DEFAULT_MEDIA_TYPE,
                                creator=creator, created_at=now_iso(), lineage=lineage)
        self.index.add(record, self.clock())
        return self.index.get(owner, written.digest) or record

    def put_file(self, owner: str, source: IO[bytes], **kwargs: Any) -> ArtifactRecord:
        return self.put(owner, read_chunks(source), **kwargs)

    def get(self, owner: str, digest: str) -> ArtifactRecord:
        """The owner's record of a blob; another owner's blob is simply not found."""
        record = self.index.get(owner, digest)
        if record is None or not self.blobs.exists(digest):
            raise ArtifactNotFound(f"no artifact sha256:{digest} of {owner}")
        return record

    def stream(self, owner: str, digest: str) -> tuple[ArtifactRecord, Iterator[bytes]]:
        record = self.get(owner, digest)
        return record, self.blobs.chunks(digest)

    def reference(self, owner: str, digest: str, ref: str) -> None:
        self.index.reference(owner, digest, ref)

    def unreference(self, owner: str, digest: str, ref: str) -> None:
        self.index.unreference(owner, digest, ref, self.clock())
