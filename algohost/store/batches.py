"""Batches in Redis: the record, its inputs as a list, results as a hash, counts by status.

Recording results is idempotent (HSETNX per index, counts move only for new ones), so a
chunk that runs twice never counts twice; completion is decided inside the same script.
A running chunk holds a lease, as a running job does, so a lost worker's chunk runs again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

import redis

from algohost.store import (
    PREFIX,
    RecordFields,
    decode_value,
    encode_value,
    lua,
    translate_errors,
)
from algohost.store.jobs import ErrorInfo, Metrics

ITEM_STATUSES = ("succeeded", "failed", "timed_out", "canceled")
PUSH_SLICE = 1000  # inputs per RPUSH: keeps each command small
RUNNING_CHUNKS_KEY = f"{PREFIX}batch-chunks:running"  # "batch_id:start:stop" by lease expiry


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELED = "canceled"


@dataclass(slots=True)
class BatchRecord:
    """A batch as stored: a Redis hash of JSON text fields (inputs, results and counts live
    in keys of their own). Missing fields take their defaults; unknown ones are skipped."""

    id: str
    owner: str
    status: BatchStatus
    requested: str = ""  # the algorithm as the caller named it
    algorithm: str = ""  # the exact build: owner/name@1.2.3
    build_id: str = ""
    reason: str | None = None
    total: int = 0  # how many inputs
    created_at: str = ""
    finished_at: str | None = None
    timeout_s: int = 0  # each input's limit
    webhook: str | None = None
    webhook_events: list[str] = field(default_factory=list)
    royalty_micros: int = 0  # what the caller owes the algorithm's owner per input run

    def to_redis(self) -> dict[str, str]:
        return BATCH_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> BatchRecord:
        return BATCH_FIELDS.decode(raw)


BATCH_FIELDS = RecordFields(BatchRecord, "batch", typed={"status": BatchStatus})


@dataclass(frozen=True)
class ChunkMeter:
    """What folds a flush's newly stored inputs into the usage ledger and the build's
    metrics in the same script that stores them (see store/batch_metering.py)."""

    keys: list[str]
    header: list[str]
    # A flush's results -> the flush's sums and each input's own figures, in order.
    figures: Callable[[Iterable[ItemResult]], tuple[list[str], list[str]]]


class ItemResult(TypedDict, total=False):
    """One input's stored result: output when it succeeded, else error and a log tail."""

    status: str  # one of ITEM_STATUSES
    reason: str
    output: Any
    error: ErrorInfo | None
    logs: str
    metrics: Metrics


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) index ranges of at most `size` inputs covering 0..total."""
    if size < 1:
        raise ValueError("a chunk holds at least one input")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


_RUNNING, _COMPLETED, _CANCELED = (encode_value(s.value) for s in (
    BatchStatus.RUNNING, BatchStatus.COMPLETED, BatchStatus.CANCELED))
_ITEM_STATUSES = ",".join(ITEM_STATUSES)


def chunk_member(batch_id: str, start: int, stop: int) -> str:
    return f"{batch_id}:{start}:{stop}"


class BatchStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._record = client.register_script(lua("batch_record_results"))
        self._cancel = client.register_script(lua("batch_cancel"))
        self._claim_chunk = client.register_script(lua("chunk_claim"))
        self._hold_chunk = client.register_script(lua("chunk_hold"))
        self._take_expired_chunk = client.register_script(lua("chunk_take_expired"))

    @staticmethod
    def key(batch_id: str) -> str:
        return f"{PREFIX}batch:{batch_id}"

    @classmethod
    def inputs_key(cls, batch_id: str) -> str:
        return cls.key(batch_id) + ":inputs"

    @classmethod
    def results_key(cls, batch_id: str) -> str:
        return cls.key(batch_id) + ":results"

    @classmethod
    def counts_key(cls, batch_id: str) -> str:
        return cls.key(batch_id) + ":counts"

    @staticmethod
    def owner_index_key(owner: str) -> str:
        """The owner's batches by creation time, so they can be listed."""
        return f"{PREFIX}batches:{owner}"

    @classmethod
    def chunks_key(cls, batch_id: str) -> str:
        """Attempts per chunk, by "start:stop"."""
        return cls.key(batch_id) + ":chunks"

    @translate_errors
    def create(self, record: BatchRecord, inputs: list[str]) -> None:
        """Write the record and its inputs (each already JSON text), all with the retention TTL."""
        batch_id = record.id
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(inputs), PUSH_SLICE):
            pipe.rpush(self.inputs_key(batch_id), *inputs[start:start + PUSH_SLICE])
        pipe.hset(self.counts_key(batch_id), mapping={status: 0 for status in ITEM_STATUSES})
        for key in (self.inputs_key(batch_id), self.counts_key(batch_id)):
            pipe.expire(key, self.retention_s)
        # The record goes last: a batch is visible only once its inputs are all there.
        pipe.hset(self.key(batch_id), mapping=record.to_redis())
        pipe.expire(self.key(batch_id), self.retention_s)
        now, index = time.time(), self.owner_index_key(record.owner)
        pipe.zadd(index, {batch_id: now})
        pipe.zremrangebyscore(index, "-inf", now - self.retention_s)  # expired records
        pipe.expire(index, self.retention_s)
        pipe.execute()

    @translate_errors
    def list_for_owner(self, owner: str, limit: int) -> list[BatchRecord]:
        """The owner's newest batches, newest first; expired ones are skipped."""
        ids = self.redis.zrevrange(self.owner_index_key(owner), 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.hgetall(self.key(batch_id))
        return [BatchRecord.from_redis(raw) for raw in (pipe.execute() if ids else []) if raw]

    @translate_errors
    def get(self, batch_id: str) -> BatchRecord | None:
        raw = self.redis.hgetall(self.key(batch_id))
        return BatchRecord.from_redis(raw) if raw else None

    @translate_errors
    def status(self, batch_id: str) -> BatchStatus | None:
        raw = self.redis.hget(self.key(batch_id), "status")
        return BatchStatus(decode_value(raw)) if raw else None

    @translate_errors
    def counts(self, batch_id: str) -> dict[str, int]:
        raw = self.redis.hgetall(self.counts_key(batch_id))
        return {status: int(raw.get(status, 0)) for status in ITEM_STATUSES}

    @translate_errors
    def inputs(self, batch_id: str, start: int, stop: int) -> list[Any]:
        """Inputs start..stop-1, decoded."""
        if stop <= start:
            return []
        return [json.loads(item)
                for item in self.redis.lrange(self.inputs_key(batch_id), start, stop - 1)]

    @translate_errors
    def record_results(self, batch_id: str, results: Mapping[int, ItemResult],
                       finished_at: str, meter: ChunkMeter | None = None) -> bool:
        """Store results not stored yet; True when this call finished the batch. With a
        meter, those newly stored are metered in the same call, so each input once."""
        if not results:
            return False
        args: list[Any] = [encode_value(finished_at), _RUNNING, _COMPLETED, _ITEM_STATUSES,
                           3 if meter is None else 4]
        keys = [self.key(batch_id), self.results_key(batch_id), self.counts_key(batch_id)]
        if meter is None:
            for index, result in results.items():
                args += [index, result["status"], encode_value(result)]
        else:
            sums, figures = meter.figures(results.values())
            keys += meter.keys
            args += meter.header + sums
            for (index, result), own in zip(results.items(), figures, strict=True):
                args += [index, result["status"], encode_value(result), own]
        return bool(self._record(keys=keys, args=args) == 1)

    @translate_errors
    def results(self, batch_id: str, start: int, stop: int,
                max_bytes: int | None = None) -> list[ItemResult | None]:
        """Results of inputs start..stop-1 in input order; None where not finished. With
        `max_bytes`, the page ends early (after at least one result) rather than decode
        more stored JSON than that."""
        if stop <= start:
            return []
        raw = self.redis.hmget(self.results_key(batch_id), list(range(start, stop)))
        if max_bytes is not None:
            size = 0
            for taken, item in enumerate(raw):
                size += len(item or "")
                if taken and size > max_bytes:
                    raw = raw[:taken]
                    break
        return [None if item is None else json.loads(item) for item in raw]

    @translate_errors
    def unfinished(self, batch_id: str, start: int, stop: int) -> list[int]:
        """Indices start..stop-1 that have no result yet."""
        if stop <= start:
            return []
        raw = self.redis.hmget(self.results_key(batch_id), list(range(start, stop)))
        return [start + offset for offset, item in enumerate(raw) if item is None]

    @translate_errors
    def cancel(self, batch_id: str, finished_at: str, reason: str = "canceled") -> bool:
        """running -> canceled; False when the batch had already finished."""
        return bool(self._cancel(keys=[self.key(batch_id)],
                                 args=[encode_value(finished_at), encode_value(reason),
                                       _RUNNING, _CANCELED]) == 1)

    # Chunk leases -------------------------------------------------------------------------

    @translate_errors
    def claim_chunk(self, batch_id: str, start: int, stop: int, until: float,
                    now: float) -> int:
        """Hold the chunk until `until`: its attempt number, or 0 while a live lease holds it."""
        return int(self._claim_chunk(
            keys=[RUNNING_CHUNKS_KEY, self.chunks_key(batch_id)],
            args=[chunk_member(batch_id, start, stop), repr(until), repr(now),
                  f"{start}:{stop}", self.retention_s]))

    @translate_errors
    def hold_chunk(self, batch_id: str, start: int, stop: int, held_until: float,
                   until: float | None) -> bool:
        """Renew the lease that expires at `held_until` (release it when `until` is None).

        False when that lease is no longer there: the chunk was reaped or taken over."""
        return bool(self._hold_chunk(
            keys=[RUNNING_CHUNKS_KEY],
            args=[chunk_member(batch_id, start, stop), repr(held_until),
                  "" if until is None else repr(until)]) == 1)

    @translate_errors
    def take_expired_chunks(self, now: float) -> list[tuple[str, int, int, int]]:
        """Chunks whose lease expired, each taken by this caller only: (batch, start, stop,
        attempts so far)."""
        taken = []
        for member in self.redis.zrangebyscore(RUNNING_CHUNKS_KEY, "-inf", now):
            batch_id, start, stop = member.rsplit(":", 2)
            attempts = int(self._take_expired_chunk(
                keys=[RUNNING_CHUNKS_KEY, self.chunks_key(batch_id)],
                args=[member, repr(now), f"{start}:{stop}"]))
            if attempts >= 0:
                taken.append((batch_id, int(start), int(stop), attempts))
        return taken
