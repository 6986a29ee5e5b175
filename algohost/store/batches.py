"""Batches in Redis: the record, its inputs as a list, results as a hash, counts by status.

Recording results is idempotent (HSETNX per index, counts move only for new ones), so a
chunk that runs twice never counts twice; completion is decided inside the same script.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import redis

from algohost.store import PREFIX, encode_value, translate_errors

ITEM_STATUSES = ("succeeded", "failed", "timed_out", "canceled")
PUSH_SLICE = 1000  # inputs per RPUSH: keeps each command small


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


class BatchStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._record = client.register_script(_RECORD)
        self._cancel = client.register_script(_CANCEL)

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
    def cancel(self, batch_id: str, finished_at: str, reason: str = "canceled") -> bool:
        """running -> canceled; False when the batch had already finished."""
        return bool(self._cancel(keys=[self.key(batch_id)],
                                 args=[encode_value(finished_at), encode_value(reason)]) == 1)
