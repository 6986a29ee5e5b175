"""Sweeps in Redis: the record, its trials as a hash by trial number, and the controller's lock.

The trials ARE the sampler's state: a worker that restarts rebuilds the study from them.
A trial number is taken with HSETNX and a trial settles with a compare-and-set from
`running`, so a controller step that runs twice never adds or counts a trial twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import redis

from algohost.clock import now_iso
from algohost.store import PREFIX, RecordFields, encode_value, translate_errors
from algohost.store.jobs import ArtifactInfo, JobRecord, JobStatus
from algohost.sweepspace import Objective, SweepSpec

MAX_ERROR_CHARS = 500  # of a failed trial's error message, kept in the sweep's record


class SweepStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class TrialStatus(StrEnum):
    RUNNING = "running"  # its job is queued or running
    SUCCEEDED = "succeeded"  # its job succeeded and its output holds the objective
    FAILED = "failed"  # anything else: the job failed, timed out, or gave no objective


@dataclass(slots=True)
class SweepRecord:
    """A sweep as stored: a Redis hash of JSON text fields (its trials live in a hash of
    their own). Missing fields take their defaults; unknown ones are skipped."""

    id: str
    owner: str
    status: SweepStatus
    spec: SweepSpec
    requested: str = ""  # the algorithm as the caller named it
    algorithm: str = ""  # the exact build every trial runs: owner/name@1.2.3
    build_id: str = ""
    created_at: str = ""
    finished_at: str | None = None
    reason: str | None = None  # why it ended: budget_spent, no_improvement, or an error code
    message: str | None = None

    def to_redis(self) -> dict[str, str]:
        return SWEEP_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> SweepRecord:
        return SWEEP_FIELDS.decode(raw)


SWEEP_FIELDS = RecordFields(SweepRecord, "sweep",
                            typed={"status": SweepStatus, "spec": SweepSpec.from_plain},
                            plain={"spec": SweepSpec.to_plain})


@dataclass(slots=True)
class Trial:
    """One point of the space and the job that evaluates it."""

    number: int
    job_id: str
    params: dict[str, Any]
    status: TrialStatus = TrialStatus.RUNNING
    objective: float | None = None
    reason: str | None = None  # the job's reason, or objective_missing
    error: str | None = None
    duration_ms: float | None = None  # the job's total_ms
    artifacts: list[ArtifactInfo] = field(default_factory=list)
    created_at: str = ""
    finished_at: str | None = None

    def to_json(self) -> str:
        return encode_value(asdict(self))

    @staticmethod
    def from_json(text: str) -> Trial:
        data = json.loads(text)
        data["status"] = TrialStatus(data["status"])
        return Trial(**data)

    def settled_by(self, job: JobRecord, objective: Objective) -> Trial:
        """The trial as its finished job leaves it."""
        total_ms = job.metrics.get("total_ms") if job.metrics else None
        common: dict[str, Any] = {
            "duration_ms": total_ms,
            "artifacts": list(job.artifacts), "finished_at": job.finished_at or now_iso()}
        if job.status is not JobStatus.SUCCEEDED:
            message = (job.error["message"] if job.error else "") or job.reason or job.status.value
            return replace(self, status=TrialStatus.FAILED,
                           reason=job.reason or job.status.value,
                           error=message[:MAX_ERROR_CHARS], **common)
        value = objective.read(job.output)
        if value is None:
            return replace(self, status=TrialStatus.FAILED, reason="objective_missing",
                           error=f"the output has no number at {objective.key!r}", **common)
        return replace(self, status=TrialStatus.SUCCEEDED, objective=value, reason=job.reason,
                       **common)


# KEYS[1] sweep hash, KEYS[2] trials hash; ARGV[1] the running status, ARGV[2] trial
# number, ARGV[3] the trial's JSON, ARGV[4] retention (s).
_ADD = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[3]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS[1] trials hash; ARGV[1] trial number, ARGV[2] the settled trial's JSON.
_SETTLE = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if not current or cjson.decode(current)['status'] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] sweep hash, KEYS[2] the running set; ARGV[1] sweep id, ARGV[2] the running
# status, ARGV[3] the target status, then field/value pairs.
_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[3])
for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS[1] lock; ARGV[1] the holder's token.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RUNNING = encode_value(SweepStatus.RUNNING.value)


class SweepStore:
    RUNNING_KEY = f"{PREFIX}sweeps:running"  # ids of running sweeps: the reaper's list

    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._add = client.register_script(_ADD)
        self._settle = client.register_script(_SETTLE)
        self._finish = client.register_script(_FINISH)
        self._unlock = client.register_script(_UNLOCK)

    @staticmethod
    def key(sweep_id: str) -> str:
        return f"{PREFIX}sweep:{sweep_id}"

    @classmethod
    def trials_key(cls, sweep_id: str) -> str:
        return cls.key(sweep_id) + ":trials"

    @staticmethod
    def owner_index_key(owner: str) -> str:
        return f"{PREFIX}sweeps:owner:{owner}"

    @translate_errors
    def create(self, record: SweepRecord, now: float) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key(record.id), mapping=record.to_redis())
        pipe.expire(self.key(record.id), self.retention_s)
        pipe.zadd(self.owner_index_key(record.owner), {record.id: now})
        pipe.expire(self.owner_index_key(record.owner), self.retention_s)
        pipe.sadd(self.RUNNING_KEY, record.id)
        pipe.execute()

    @translate_errors
    def get(self, sweep_id: str) -> SweepRecord | None:
        raw = self.redis.hgetall(self.key(sweep_id))
        return SweepRecord.from_redis(raw) if "status" in raw else None

    @translate_errors
    def status(self, sweep_id: str) -> SweepStatus | None:
        raw = self.redis.hget(self.key(sweep_id), "status")
        return SweepStatus(json.loads(raw)) if raw else None

    @translate_errors
    def trials(self, sweep_id: str) -> list[Trial]:
        """Every trial so far, by number."""
        raw = self.redis.hgetall(self.trials_key(sweep_id))
        return sorted((Trial.from_json(text) for text in raw.values()), key=lambda t: t.number)

    @translate_errors
    def add_trial(self, sweep_id: str, trial: Trial) -> bool:
        """Take the trial's number; False when another step took it first, or the sweep
        has ended (a cancel between a step's read and this write starts nothing)."""
        return bool(self._add(keys=[self.key(sweep_id), self.trials_key(sweep_id)],
                              args=[_RUNNING, str(trial.number), trial.to_json(),
                                    self.retention_s]) == 1)

    @translate_errors
    def settle_trial(self, sweep_id: str, trial: Trial) -> bool:
        """Record a running trial's end; False when it had already ended."""
        return bool(self._settle(keys=[self.trials_key(sweep_id)],
                                 args=[str(trial.number), trial.to_json()]) == 1)

    @translate_errors
    def finish(self, sweep_id: str, status: SweepStatus, **fields: Any) -> bool:
        """running -> `status`, with `fields`; False when the sweep had already ended."""
        SWEEP_FIELDS.check(fields)
        args: list[str] = [sweep_id, _RUNNING, encode_value(status.value)]
        for name, value in fields.items():
            args += [name, encode_value(value)]
        return bool(self._finish(keys=[self.key(sweep_id), self.RUNNING_KEY], args=args) == 1)

    @translate_errors
    def running(self) -> list[str]:
        return sorted(self.redis.smembers(self.RUNNING_KEY))

    @translate_errors
    def forget(self, sweep_id: str) -> None:
        """Drop an id from the running set (its record expired)."""
        self.redis.srem(self.RUNNING_KEY, sweep_id)

    @translate_errors
    def list_for_owner(self, owner: str, limit: int) -> list[SweepRecord]:
        ids = self.redis.zrevrange(self.owner_index_key(owner), 0, limit - 1)
        pipe = self.redis.pipeline(transaction=False)
        for sweep_id in ids:
            pipe.hgetall(self.key(sweep_id))
        return [SweepRecord.from_redis(raw) for raw in pipe.execute() if "status" in raw]

    # The controller's lock: one step of a sweep at a time; a request that finds it held
    # leaves a mark that the holder reads before it lets go, so no request is lost.

    @translate_errors
    def request_step(self, sweep_id: str) -> None:
        self.redis.set(self.key(sweep_id) + ":wanted", "1", ex=self.retention_s)

    @translate_errors
    def take_request(self, sweep_id: str) -> bool:
        return bool(self.redis.delete(self.key(sweep_id) + ":wanted"))

    @translate_errors
    def requested(self, sweep_id: str) -> bool:
        return bool(self.redis.exists(self.key(sweep_id) + ":wanted"))

    @translate_errors
    def lock(self, sweep_id: str, token: str, ttl_s: int) -> bool:
        return bool(self.redis.set(self.key(sweep_id) + ":lock", token, nx=True, ex=ttl_s))

    @translate_errors
    def unlock(self, sweep_id: str, token: str) -> None:
        self._unlock(keys=[self.key(sweep_id) + ":lock"], args=[token])
