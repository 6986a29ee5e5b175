"""Garbage collection that really deletes: blobs nobody references, past their grace period.

The filesystem is the truth of what exists, so a blob whose record was lost is found
and collected too. A reference whose holder expired (a job record past retention)
is dropped first; nothing referenced is ever deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis

from algohost.artifacts.store import ArtifactStore
from algohost.config import Settings
from algohost.store import PREFIX, connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GcReport:
    examined: int
    deleted: int
    bytes_freed: int
    references_dropped: int

    def to_dict(self) -> dict[str, int]:
        return {"examined": self.examined, "deleted": self.deleted,
                "bytes_freed": self.bytes_freed, "references_dropped": self.references_dropped}


def records_alive(client: redis.Redis) -> Callable[[str], bool]:
    """Is the holder of a reference (`kind:id`) still there? Jobs expire on their own;
    every other holder (model, data entry, version) removes its reference when deleted."""

    def alive(ref: str) -> bool:
        kind, _, ident = ref.partition(":")
        if kind == "job":
            return bool(client.exists(f"{PREFIX}job:{ident}"))
        return True

    return alive


def collect(store: ArtifactStore, grace_s: float, alive: Callable[[str], bool],
            now: float | None = None) -> GcReport:
    now = store.clock() if now is None else now
    cutoff = now - grace_s
    examined = deleted = freed = dropped = 0
    for digest in list(store.blobs.digests()):
        examined += 1
        dropped += store.index.prune_references(digest, alive, now)
        if store.index.references(digest):
            continue
        if store.index.unreferenced_since(digest) is None:
            store.index.mark_unreferenced(digest, now)  # unknown to the records: grace starts
            continue
        if not store.index.claim_for_deletion(digest, cutoff):
            continue
        freed += store.blobs.delete(digest)
        store.index.forget(digest)
        deleted += 1
    if deleted:
        log.warning("artifact gc deleted %d blobs, %d bytes", deleted, freed)
    return GcReport(examined, deleted, freed, dropped)


GC_LOCK = f"{PREFIX}artifacts:gc-lock"


def collect_garbage(settings: Settings, grace_s: float | None = None) -> GcReport:
    """One collection over the configured store (the `algohost gc` command)."""
    client = connect(settings)
    store = ArtifactStore.from_settings(settings, client)
    grace = settings.artifact_gc_grace_s if grace_s is None else grace_s
    return collect(store, grace, records_alive(client))


def collect_periodically(settings: Settings, stop: threading.Event) -> None:
    """Every interval, one worker of the fleet collects (a lock in Redis picks it)."""
    interval = settings.artifact_gc_interval_s
    if interval <= 0:
        return
    client = connect(settings)
    while not stop.wait(interval):
        try:
            if client.set(GC_LOCK, "1", nx=True, ex=max(int(interval) - 1, 1)):
                collect_garbage(settings)
        except Exception:  # the next interval tries again
            log.exception("artifact gc failed")
