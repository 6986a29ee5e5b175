"""Job records in Redis: the lifecycle, compare-and-set transitions, leases, waiting.

The record is the truth, not the broker: every status change is a CAS in one
Lua script, so a redelivered message for a finished job changes nothing.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

import redis

from algohost.store import (
    PREFIX,
    RecordFields,
    decode_value,
    encode_fields,
    encode_value,
    lua,
    translate_errors,
)
from algohost.store.completions import CHANNEL as COMPLETIONS
from algohost.store.completions import CompletionWaiter


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


class CellInfo(TypedDict):
    """The notebook cell a call failed in: its index and the head of its source."""

    index: int
    source: str


class ErrorInfo(TypedDict):
    """Why a call failed, as the runner or the worker reports it."""

    type: str
    message: str
    traceback: str | None
    cell: NotRequired[CellInfo]  # a notebook's failing cell


class Metrics(TypedDict, total=False):
    """What the worker measured of a call (a batch item carries run_ms and memory only)."""

    queue_ms: float
    cold_start_ms: float
    run_ms: float
    total_ms: float
    peak_memory_bytes: int


class ArtifactInfo(TypedDict):
    """A file the call left under /outputs, stored as an artifact."""

    name: str
    sha256: str
    size: int
    media_type: str
    url: str


@dataclass(slots=True)
class JobRecord:
    """One call as stored: a Redis hash whose fields are JSON text.

    Every field but id, owner and status has a default, so records written before a
    field existed still load; fields this code does not know are skipped on reading."""

    id: str
    owner: str
    status: JobStatus
    requested: str = ""  # the algorithm as the caller named it
    algorithm: str = ""  # the exact build: owner/name@1.2.3
    build_id: str = ""
    image: str = ""
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    logs: str = ""
    reason: str | None = None
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    warm: bool | None = None
    timeout_s: int = 0
    attempts: int = 0
    metrics: Metrics | None = None
    webhook: str | None = None
    webhook_events: list[str] = field(default_factory=list)
    worker: str | None = None  # the worker that claimed it last
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    parent: str | None = None  # what submitted it besides a caller: "sweep:<id>"
    # What the algorithm reported with algohost_runtime.log_metric: the last value per name.
    custom_metrics: dict[str, float] = field(default_factory=dict)
    royalty_micros: int = 0  # what the caller owes the algorithm's owner for this call
    parent_job: str | None = None  # set on a call an algorithm made during its own call
    children: list[str] = field(default_factory=list)  # the calls this one made, in order
    depth: int = 0  # 0 for a call from outside; a child's is its parent's + 1

    def to_redis(self) -> dict[str, str]:
        return JOB_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> JobRecord:
        return JOB_FIELDS.decode(raw)


JOB_FIELDS = RecordFields(JobRecord, "job", typed={"status": JobStatus})
TRIM_CHANCE = 0.02  # trimming an owner's index now and then at a create keeps it bounded


@dataclass(frozen=True, slots=True)
class JobCreation:
    """A new job's record as one JSON object of its stored fields (one argument for the
    script to decode: sent as 58 field and value arguments, their packing cost the API
    more than the script), its retention, and whether this create also trims the owner's
    index of entries past the retention."""

    fields: str
    retention_s: int
    trim: bool


def stored_job(raw: Mapping[str, str]) -> JobRecord | None:
    """The job in a stored hash, or None when there is none: a record always has a status,
    and a late partial write to an expired job leaves only the fields it wrote."""
    return JobRecord.from_redis(raw) if "status" in raw else None


_QUEUED, _RUNNING = encode_value(JobStatus.QUEUED.value), encode_value(JobStatus.RUNNING.value)


class JobStore:
    def __init__(self, client: redis.Redis, retention_s: int,
                 completions: CompletionWaiter | None = None) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        # With a process's shared listener, a waiter holds no connection while it waits.
        self.completions = completions
        self._cas = client.register_script(lua("job_transition"))
        self._claim = client.register_script(lua("job_claim"))

    @staticmethod
    def key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}"

    @staticmethod
    def done_key(job_id: str) -> str:
        return f"{PREFIX}job:{job_id}:done"

    RUNNING_KEY = f"{PREFIX}jobs:running"

    @staticmethod
    def owner_index_key(owner: str) -> str:
        return f"{PREFIX}jobs:owner:{owner}"

    def creation(self, job: JobRecord) -> JobCreation:
        """What `create` writes, for a script that writes it with more (the fair share's
        admission): the record's field/value pairs and its retention."""
        return JobCreation(json.dumps(job.to_redis()), self.retention_s,
                           random.random() < TRIM_CHANCE)

    @translate_errors
    def create(self, job: JobRecord) -> None:
        key = self.key(job.id)
        now = time.time()
        # One round trip; no MULTI: the record is written before its id is known to
        # anyone, and a reader that finds no index entry yet simply lists it later.
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=job.to_redis())
        pipe.expire(key, self.retention_s)
        owner_index = self.owner_index_key(job.owner)
        pipe.zadd(owner_index, {job.id: now})
        pipe.expire(owner_index, self.retention_s)
        if random.random() < TRIM_CHANCE:
            pipe.zremrangebyscore(owner_index, "-inf", now - self.retention_s)
        pipe.execute()

    @translate_errors
    def get(self, job_id: str) -> JobRecord | None:
        raw = self.redis.hgetall(self.key(job_id))
        return stored_job(raw)

    @translate_errors
    def status(self, job_id: str) -> JobStatus | None:
        raw = self.redis.hget(self.key(job_id), "status")
        return JobStatus(decode_value(raw)) if raw else None

    @translate_errors
    def update(self, job_id: str, **fields: Any) -> None:
        if "status" in fields:
            raise InvalidTransition("status changes go through transition()")
        JOB_FIELDS.check(fields)
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
        JOB_FIELDS.check(fields)
        encoded = encode_fields(fields)
        args: list[str] = [",".join(encode_value(s.value) for s in sources),
                           encode_value(target.value), job_id,
                           "" if lease_until is None else repr(lease_until),
                           "1" if target.terminal else "0"]
        for name, value in encoded.items():
            args += [name, value]
        keys = [self.key(job_id), self.RUNNING_KEY, self.done_key(job_id), COMPLETIONS]
        return bool(self._cas(keys=keys, args=args) == 1)

    @translate_errors
    def claim(self, job_id: str, worker: str, started_at: str,
              lease_until: float) -> tuple[bool, JobRecord | None]:
        """queued -> running for this worker; returns (claimed, the record as it now is)."""
        claimed, flat = self._claim(
            keys=[self.key(job_id), self.RUNNING_KEY],
            args=[job_id, repr(lease_until), encode_value(started_at), encode_value(worker),
                  _QUEUED, _RUNNING])
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return bool(claimed), (JobRecord.from_redis(raw) if raw else None)

    @translate_errors
    def renew_lease(self, job_id: str, until: float) -> None:
        self.redis.zadd(self.RUNNING_KEY, {job_id: until}, xx=True)

    @translate_errors
    def expired_leases(self, now: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.RUNNING_KEY, "-inf", now))

    @translate_errors
    def wait_terminal(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """Block until the job is terminal or the timeout passes; returns the record."""
        if self.completions is not None:
            return self._wait_heard(self.completions, job_id, timeout_s)
        return self._wait_blocking(job_id, timeout_s)

    def _wait_heard(self, completions: CompletionWaiter, job_id: str,
                    timeout_s: float) -> JobRecord | None:
        """Wait on the process's shared subscription: no connection held meanwhile.

        The waiter is registered, and the listener subscribed, before the record is
        first read, so a finish that lands after that read is heard; one that landed
        before it is in the record."""
        deadline = time.monotonic() + timeout_s
        with completions.watching(job_id) as finished:
            completions.wait_ready(min(timeout_s, SUBSCRIBE_WAIT_S))
            while True:
                job = self.get(job_id)
                remaining = deadline - time.monotonic()
                if job is None or job.status.terminal or remaining <= 0:
                    return job
                # Subscribed, a finish wakes us and the re-read is only a safety net;
                # not subscribed (Redis away), the record is polled. Spread, so a
                # thousand waiters that came in one burst do not re-read in one burst.
                finished.wait(min(remaining, recheck_pause(completions.ready)))
                finished.clear()

    def _wait_blocking(self, job_id: str, timeout_s: float) -> JobRecord | None:
        """BLPOP on the job's done list: one connection held per waiter.

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
                job = stored_job(raw)
            else:
                job = self.get(job_id)
            if job is None or job.status.terminal or time.monotonic() >= deadline:
                return job

    @translate_errors
    def list_for_owner(self, owner: str, limit: int) -> list[JobRecord]:
        return self.page_for_owner(owner, limit)[0]

    @translate_errors
    def page_for_owner(self, owner: str, limit: int, offset: int = 0,
                       max_bytes: int | None = None) -> tuple[list[JobRecord], int | None]:
        """Up to `limit` of the owner's jobs, newest first, from `offset` in its index, and
        no more than `max_bytes` of stored record (at least one); returns them and the
        offset of the next page (None at the end). Records are read a few at a time and
        sized as stored, before they are decoded."""
        index = self.owner_index_key(owner)
        jobs: list[JobRecord] = []
        size, position = 0, offset
        while len(jobs) < limit:
            ids = self.redis.zrevrange(index, position, position + PAGE_READ - 1)
            if not ids:
                return jobs, None
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hgetall(self.key(job_id))
            for raw in pipe.execute():
                record_bytes = sum(len(value) for value in raw.values())
                if jobs and max_bytes is not None and size + record_bytes > max_bytes:
                    return jobs, position
                position += 1
                if raw:  # an expired record still in the index is skipped
                    jobs.append(JobRecord.from_redis(raw))
                    size += record_bytes
                if len(jobs) >= limit:
                    break
        more = bool(self.redis.zrevrange(index, position, position))
        return jobs, position if more else None


PAGE_READ = 10  # records read per round trip while a page is filled
SUBSCRIBE_WAIT_S = 2.0  # how long a waiter lets the shared listener subscribe first
RECHECK_S = 5.0  # a subscribed waiter re-reads its record about this often all the same
POLL_S = 0.5  # and about this often while the listener is not subscribed


def recheck_pause(subscribed: bool) -> float:
    """How long a waiter sleeps before its next read if no finish wakes it: about RECHECK_S
    (POLL_S unsubscribed), drawn from half to one and a half times that, so waiters that
    arrived together spread their reads instead of reading all at once every pause."""
    return (RECHECK_S if subscribed else POLL_S) * (0.5 + random.random())
