"""Job records in Redis: the lifecycle, compare-and-set transitions, leases, waiting.

The record is the truth, not the broker: every status change is a CAS in one
Lua script, so a redelivered message for a finished job changes nothing.
"""

from __future__ import annotations

import json
import random
import time
from enum import StrEnum
from typing import Any

import redis

from algohost.store import PREFIX, decode_fields, encode_fields, encode_value, translate_errors


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT,
                      JobStatus.CANCELED})

# The one table of allowed moves. running -> queued is the reaper re-enqueueing
# a job whose worker was lost.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT,
                                  JobStatus.CANCELED, JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.TIMED_OUT: frozenset(),
    JobStatus.CANCELED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A transition outside TRANSITIONS was asked for: a bug, never user input."""


def sources_for(target: JobStatus) -> frozenset[JobStatus]:
    return frozenset(s for s, targets in TRANSITIONS.items() if target in targets)


# KEYS[1] job hash, KEYS[2] running zset, KEYS[3] the job's done list; ARGV[1]
# comma list of encoded allowed statuses, ARGV[2] encoded new status, ARGV[3] job
# id, ARGV[4] lease expiry or "", ARGV[5] "1" when the new status is terminal,
# then field/value pairs. Waking waiters in the same script saves a round trip.
_CAS = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return -1 end
local ok = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == current then ok = true end
end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2])
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
else
  redis.call('ZREM', KEYS[2], ARGV[3])
end
if ARGV[5] == '1' then
  redis.call('RPUSH', KEYS[3], '1')
  redis.call('EXPIRE', KEYS[3], 300)
end
return 1
"""


# Claim a queued job in one round trip: KEYS[1] job hash, KEYS[2] running zset;
# ARGV[1] job id, ARGV[2] lease expiry, ARGV[3] started_at, ARGV[4] worker (both
# JSON-encoded). Returns {claimed 0|1, flat HGETALL of the record after}.
_CLAIM = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, {}} end
if current ~= '"queued"' then return {0, redis.call('HGETALL', KEYS[1])} end
redis.call('HSET', KEYS[1], 'status', '"running"', 'started_at', ARGV[3], 'worker', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return {1, redis.call('HGETALL', KEYS[1])}
"""


class JobStore:
    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._cas = client.register_script(_CAS)
        self._claim = client.register_script(_CLAIM)

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def done_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}:done"

    RUNNING_KEY = f"{PREFIX}jobs:running"

    @translate_errors
    def create(self, job: dict[str, Any]) -> None:
        key = self.key(job["id"])
        now = time.time()
        # One round trip; no MULTI: the record is written before its id is known to
        # anyone, and a reader that finds no index entry yet simply lists it later.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=encode_fields(job))
        pipe.expire(key, self.retention_s)
        owner_index = f"{PREFIX}jobs:owner:{job['owner']}"
        pipe.zadd(owner_index, {job["id"]: now})
        pipe.expire(owner_index, self.retention_s)
        if random.random() < 0.02:  # trimming the index now and then keeps it bounded
            pipe.zremrangebyscore(owner_index, "-inf", now - self.retention_s)
        pipe.execute()

    @translate_errors
    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.key(job_id))
        return decode_fields(raw) if raw else None

    @translate_errors
    def status(self, job_id: str) -> JobStatus | None:
        raw = self.redis.hget(self.key(job_id), "status")
        return JobStatus(json.loads(raw)) if raw else None

    @translate_errors
    def update(self, job_id: str, **fields: Any) -> None:
        if "status" in fields:
            raise InvalidTransition("status changes go through transition()")
        self.redis.hset(self.key(job_id), mapping=encode_fields(fields))

    @translate_errors
    def transition(self, job_id: str, target: JobStatus,
                   expected: set[JobStatus] | frozenset[JobStatus] | None = None,
                   lease_until: float | None = None, **fields: Any) -> bool:
        """Move the job to `target` if its status is one of `expected`.

        Returns False when the record is in another state (someone else won)."""
        allowed = sources_for(target)
        sources = allowed if expected is None else frozenset(expected)
        if not sources <= allowed:
            raise InvalidTransition(f"{sorted(sources - allowed)} -> {target} is not allowed")
        encoded = encode_fields(fields)
        args: list[str] = [",".join(json.dumps(s.value) for s in sources),
                           json.dumps(target.value), job_id,
                           "" if lease_until is None else repr(lease_until),
                           "1" if target.terminal else "0"]
        for name, value in encoded.items():
            args += [name, value]
        keys = [self.key(job_id), self.RUNNING_KEY, self.done_key(job_id)]
        return bool(self._cas(keys=keys, args=args) == 1)

    @translate_errors
    def claim(self, job_id: str, worker: str, started_at: str,
              lease_until: float) -> tuple[bool, dict[str, Any] | None]:
        """queued -> running for this worker; returns (claimed, the record as it now is)."""
        claimed, flat = self._claim(
            keys=[self.key(job_id), self.RUNNING_KEY],
            args=[job_id, repr(lease_until), encode_value(started_at), encode_value(worker)])
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return bool(claimed), (decode_fields(raw) if raw else None)

    @translate_errors
    def renew_lease(self, job_id: str, until: float) -> None:
        self.redis.zadd(self.RUNNING_KEY, {job_id: until}, xx=True)

    @translate_errors
    def expired_leases(self, now: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.RUNNING_KEY, "-inf", now))

    @translate_errors
    def wait_terminal(self, job_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Block until the job is terminal or the timeout passes; returns the record.

        The done list is pushed after the terminal write and outlives it, so
        waiting on it first loses nothing and saves a read in the common case."""
        deadline = time.monotonic() + timeout_s
        done = self.done_key(job_id)
        while True:
            remaining = deadline - time.monotonic()
            # Floats for BLPOP need Redis >= 6.
            if remaining > 0 and self.redis.blpop([done], timeout=max(remaining, 0.01)):
                # Put the token back so any other waiter on this job wakes too.
                pipe = self.redis.pipeline(transaction=False)
                pipe.rpush(done, "1")
                pipe.hgetall(self.key(job_id))
                raw = pipe.execute()[1]
                job = decode_fields(raw) if raw else None
            else:
                job = self.get(job_id)
            if job is None or JobStatus(job["status"]).terminal or time.monotonic() >= deadline:
                return job

    @translate_errors
    def list_for_owner(self, owner: str, limit: int) -> list[dict[str, Any]]:
        ids = self.redis.zrevrange(f"{PREFIX}jobs:owner:{owner}", 0, max(limit * 2, limit) - 1)
        jobs = []
        for job_id in ids:
            job = self.get(job_id)
            if job is not None:
                jobs.append(job)
            if len(jobs) >= limit:
                break
        return jobs
