"""Batches in Redis: the record, its inputs as a list, results as a hash, counts by status.

Recording results is idempotent (HSETNX per index, counts move only for new ones), so a
chunk that runs twice never counts twice; completion is decided inside the same script.
A running chunk holds a lease, as a running job does, so a lost worker's chunk runs again.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import redis

from algohost.store import PREFIX, encode_value, translate_errors

ITEM_STATUSES = ("succeeded", "failed", "timed_out", "canceled")
PUSH_SLICE = 1000  # inputs per RPUSH: keeps each command small
RUNNING_CHUNKS_KEY = f"{PREFIX}batch-chunks:running"  # "batch_id:start:stop" by lease expiry


class BatchStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELED = "canceled"


def chunk_ranges(total: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) index ranges of at most `size` inputs covering 0..total."""
    if size < 1:
        raise ValueError("a chunk holds at least one input")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


# KEYS: batch hash, results hash, counts hash. ARGV[1] encoded finished_at, then
# (index, status, encoded result) triples.
_RECORD = """
local added = 0
for i = 2, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[3], ARGV[i + 1], 1)
    added = added + 1
  end
end
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
local done = 0
for _, status in ipairs({'succeeded', 'failed', 'timed_out', 'canceled'}) do
  done = done + tonumber(redis.call('HGET', KEYS[3], status) or '0')
end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
if added > 0 and done >= total and redis.call('HGET', KEYS[1], 'status') == '"running"' then
  redis.call('HSET', KEYS[1], 'status', '"completed"', 'finished_at', ARGV[1])
  return 1
end
return 0
"""

# KEYS: batch hash. ARGV[1] encoded finished_at, ARGV[2] encoded reason.
_CANCEL = """
if redis.call('HGET', KEYS[1], 'status') ~= '"running"' then return 0 end
redis.call('HSET', KEYS[1], 'status', '"canceled"', 'finished_at', ARGV[1], 'reason', ARGV[2])
return 1
"""


# KEYS: running chunks zset, the batch's chunk attempts hash. ARGV: member, lease expiry,
# now, "start:stop", retention. A live lease elsewhere wins (0); an expired one is taken
# over, so a redelivered message need not wait for the reaper. Returns the attempt number.
_CLAIM_CHUNK = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if held and tonumber(held) > tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local attempts = redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
redis.call('EXPIRE', KEYS[2], ARGV[5])
return attempts
"""

# KEYS: running chunks zset. ARGV: member, the expiry this holder last wrote, the new expiry
# ('' releases). The expiry it wrote identifies the holder: after the lease was reaped or
# taken over, the old holder can neither renew nor release the new one.
_HOLD_CHUNK = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held or tonumber(held) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

# KEYS: running chunks zset, the batch's chunk attempts hash. ARGV: member, now,
# "start:stop". Takes an expired lease off the set for one reaper only (-1 when it was
# renewed, taken over or reaped meanwhile); returns the chunk's attempts so far.
_TAKE_EXPIRED_CHUNK = """
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held or tonumber(held) > tonumber(ARGV[2]) then return -1 end
redis.call('ZREM', KEYS[1], ARGV[1])
return tonumber(redis.call('HGET', KEYS[2], ARGV[3]) or '0')
"""


def chunk_member(batch_id: str, start: int, stop: int) -> str:
    return f"{batch_id}:{start}:{stop}"


class BatchStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._record = client.register_script(_RECORD)
        self._cancel = client.register_script(_CANCEL)
        self._claim_chunk = client.register_script(_CLAIM_CHUNK)
        self._hold_chunk = client.register_script(_HOLD_CHUNK)
        self._take_expired_chunk = client.register_script(_TAKE_EXPIRED_CHUNK)

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

    @classmethod
    def chunks_key(cls, batch_id: str) -> str:
        """Attempts per chunk, by "start:stop"."""
        return cls.key(batch_id) + ":chunks"

    @translate_errors
    def create(self, record: dict[str, Any], inputs: list[str]) -> None:
        """Write the record and its inputs (each already JSON text), all with the retention TTL."""
        batch_id = record["id"]
        pipe = self.redis.pipeline(transaction=False)
        for start in range(0, len(inputs), PUSH_SLICE):
            pipe.rpush(self.inputs_key(batch_id), *inputs[start:start + PUSH_SLICE])
        pipe.hset(self.counts_key(batch_id), mapping={status: 0 for status in ITEM_STATUSES})
        for key in (self.inputs_key(batch_id), self.counts_key(batch_id)):
            pipe.expire(key, self.retention_s)
        # The record goes last: a batch is visible only once its inputs are all there.
        pipe.hset(self.key(batch_id), mapping={k: encode_value(v) for k, v in record.items()})
        pipe.expire(self.key(batch_id), self.retention_s)
        pipe.execute()

    @translate_errors
    def get(self, batch_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.key(batch_id))
        return {k: json.loads(v) for k, v in raw.items()} if raw else None

    @translate_errors
    def status(self, batch_id: str) -> BatchStatus | None:
        raw = self.redis.hget(self.key(batch_id), "status")
        return BatchStatus(json.loads(raw)) if raw else None

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
    def record_results(self, batch_id: str, results: dict[int, dict[str, Any]],
                       finished_at: str) -> bool:
        """Store results not stored yet; True when this call finished the batch."""
        if not results:
            return False
        args: list[Any] = [encode_value(finished_at)]
        for index, result in results.items():
            args += [index, result["status"], encode_value(result)]
        keys = [self.key(batch_id), self.results_key(batch_id), self.counts_key(batch_id)]
        return bool(self._record(keys=keys, args=args) == 1)

    @translate_errors
    def results(self, batch_id: str, start: int, stop: int) -> list[dict[str, Any] | None]:
        """Results of inputs start..stop-1 in input order; None where not finished."""
        if stop <= start:
            return []
        raw = self.redis.hmget(self.results_key(batch_id), list(range(start, stop)))
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
                                 args=[encode_value(finished_at), encode_value(reason)]) == 1)

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
