"""Pipelines in Redis: versions of a spec, runs with their steps' states, and the step cache.

A run is one hash written only by compare-and-set on its revision, so schedulers on any
number of workers may advance it at once and exactly one of them wins each move. Running
runs sit in a zset by the time they are next due for a check: a run whose scheduler was
lost is found there and advanced again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from algohost.store import (
    PREFIX,
    RecordFields,
    decode_value,
    encode_value,
    lua,
    translate_errors,
)
from algohost.store.jobs import ArtifactInfo, ErrorInfo, Metrics


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self is not RunStatus.RUNNING


class StepStatus(StrEnum):
    PENDING = "pending"  # waiting for the steps it needs
    QUEUED = "queued"  # its job is submitted (the job's own status says more)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    SKIPPED = "skipped"  # never ran: a step it needs did not succeed (upstream_failed)

    @property
    def terminal(self) -> bool:
        return self in STEP_TERMINAL

    @property
    def active(self) -> bool:
        return self in (StepStatus.QUEUED, StepStatus.RUNNING)


STEP_TERMINAL = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.TIMED_OUT,
                           StepStatus.CANCELED, StepStatus.SKIPPED})
UPSTREAM_FAILED = "upstream_failed"


@dataclass(slots=True)
class StepState:
    """One step of one run: the build it calls (pinned when the run starts), its job, and
    what that job left. A cached step points at the earlier job whose result it reuses."""

    algorithm: str = ""  # the exact build: owner/name@1.2.3
    build_id: str = ""
    build_digest: str = ""  # the build's content hash
    status: StepStatus = StepStatus.PENDING
    job_id: str | None = None
    attempts: int = 0  # jobs submitted for it
    submitted_at: str | None = None
    input_digest: str | None = None
    cached: bool = False
    cache_source: str | None = None  # the job whose output a cached step reuses
    reason: str | None = None
    error: ErrorInfo | None = None
    started_at: str | None = None
    finished_at: str | None = None
    metrics: Metrics | None = None
    artifacts: list[ArtifactInfo] = field(default_factory=list)

    def to_plain(self) -> dict[str, Any]:
        # Shallow: every value is JSON already (asdict's deep copy costs ten times more).
        return {name: getattr(self, name) for name in _STEP_NAMES}

    @staticmethod
    def from_plain(data: Mapping[str, Any]) -> StepState:
        values = {k: v for k, v in data.items() if k in _STEP_KNOWN}
        if "status" in values:
            values["status"] = StepStatus(values["status"])
        return StepState(**values)


_STEP_NAMES = tuple(f.name for f in dataclasses.fields(StepState))
_STEP_KNOWN = frozenset(_STEP_NAMES)


def _steps_typed(data: Mapping[str, Any]) -> dict[str, StepState]:
    return {name: StepState.from_plain(state) for name, state in data.items()}


def _steps_plain(steps: Mapping[str, StepState]) -> dict[str, Any]:
    return {name: state.to_plain() for name, state in steps.items()}


@dataclass(slots=True)
class PipelineRunRecord:
    """A run as stored: a hash of JSON text fields, `rev` moved by every write."""

    id: str
    owner: str
    status: RunStatus
    pipeline: str = ""  # owner/name
    version: int = 0
    spec: dict[str, Any] = field(default_factory=dict)  # the version's spec, as it ran
    input: Any = None
    cache: bool = True
    created_at: str = ""
    finished_at: str | None = None
    reason: str | None = None
    failed_step: str | None = None
    error: ErrorInfo | None = None
    output: Any = None
    steps: dict[str, StepState] = field(default_factory=dict)
    rev: int = 0

    def to_redis(self) -> dict[str, str]:
        return RUN_FIELDS.encode(self)

    @staticmethod
    def from_redis(raw: Mapping[str, str]) -> PipelineRunRecord:
        return RUN_FIELDS.decode(raw)


RUN_FIELDS = RecordFields(PipelineRunRecord, "pipeline run",
                          typed={"status": RunStatus, "steps": _steps_typed},
                          plain={"steps": _steps_plain})


@dataclass(frozen=True, slots=True)
class PipelineVersionRecord:
    """One immutable version of a pipeline's spec; versions count from 1."""

    owner: str
    name: str
    version: int
    digest: str
    spec: dict[str, Any]
    created_at: str

    def to_json(self) -> str:
        return encode_value(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> PipelineVersionRecord:
        data = decode_value(text)
        return PipelineVersionRecord(
            owner=str(data["owner"]), name=str(data["name"]), version=int(data["version"]),
            digest=str(data["digest"]), spec=dict(data["spec"]),
            created_at=str(data.get("created_at", "")))


class PipelineStore:
    ACTIVE_KEY = f"{PREFIX}pipeline-runs:active"  # running runs by when they are next due

    def __init__(self, client: redis.Redis, retention_s: int) -> None:
        # redis-py's stubs type replies as bytes | str; this client decodes to str.
        self.redis: Any = client
        self.retention_s = retention_s
        self._write = client.register_script(lua("pipeline_run_write"))
        self._publish = client.register_script(lua("pipeline_publish"))

    @staticmethod
    def pipeline_key(owner: str, name: str) -> str:
        return f"{PREFIX}pipeline:{owner}/{name}"

    @classmethod
    def versions_key(cls, owner: str, name: str) -> str:
        return cls.pipeline_key(owner, name) + ":versions"

    @staticmethod
    def owner_key(owner: str) -> str:
        return f"{PREFIX}pipelines:{owner}"

    @staticmethod
    def run_key(run_id: str) -> str:
        return f"{PREFIX}pipeline-run:{run_id}"

    @staticmethod
    def runs_key(owner: str, name: str | None = None) -> str:
        """The owner's runs (of one pipeline, with `name`) by when they started."""
        return f"{PREFIX}pipeline-runs:{owner}" + ("" if name is None else f"/{name}")

    @staticmethod
    def cache_key(owner: str, build_digest: str, input_digest: str) -> str:
        return f"{PREFIX}pipeline-cache:{owner}:{build_digest}:{input_digest}"

    # Versions -----------------------------------------------------------------------------

    @translate_errors
    def publish(self, owner: str, name: str, digest: str, spec: dict[str, Any],
                created_at: str) -> tuple[PipelineVersionRecord, bool]:
        """A new version for this spec, or the latest when it already is this spec;
        returns (version, created)."""
        template = PipelineVersionRecord(owner, name, 0, digest, spec, created_at).to_json()
        template = template.replace('"version":0', '"version":"__VERSION__"', 1)
        number, created = self._publish(
            keys=[self.pipeline_key(owner, name), self.versions_key(owner, name),
                  self.owner_key(owner)],
            args=[digest, name, template])
        version = self.version(owner, name, int(number))
        assert version is not None  # written by the script that answered
        return version, bool(created)

    @translate_errors
    def version(self, owner: str, name: str, number: int | None = None
                ) -> PipelineVersionRecord | None:
        """One version (the latest when `number` is None), None when there is none."""
        if number is None:
            latest = self.redis.hget(self.pipeline_key(owner, name), "latest")
            if not latest:
                return None
            number = int(latest)
        raw = self.redis.hget(self.versions_key(owner, name), str(number))
        return PipelineVersionRecord.from_json(raw) if raw else None

    @translate_errors
    def names(self, owner: str) -> list[str]:
        return sorted(self.redis.smembers(self.owner_key(owner)))

    # Runs ---------------------------------------------------------------------------------

    @translate_errors
    def create_run(self, run: PipelineRunRecord, due: float) -> None:
        """Write a new run and mark it due for its first check at `due`."""
        key = self.run_key(run.id)
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, mapping=run.to_redis())
        pipe.expire(key, self.retention_s)
        pipe.zadd(self.ACTIVE_KEY, {run.id: due})
        name = run.pipeline.partition("/")[2]
        for index in (self.runs_key(run.owner), self.runs_key(run.owner, name)):
            pipe.zadd(index, {run.id: now})
            pipe.expire(index, self.retention_s)
            pipe.zremrangebyscore(index, "-inf", now - self.retention_s)
        pipe.execute()

    @translate_errors
    def list_runs(self, owner: str, name: str | None, limit: int,
                  offset: int = 0) -> tuple[list[PipelineRunRecord], int | None]:
        """Up to `limit` of the owner's runs (of pipeline `name`), newest first, from
        `offset` in the index; and the offset of the next page (None at the end)."""
        ids = self.redis.zrevrange(self.runs_key(owner, name), offset, offset + limit)
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids[:limit]:
            pipe.hgetall(self.run_key(run_id))
        runs = [PipelineRunRecord.from_redis(raw) for raw in pipe.execute() if "status" in raw]
        return runs, offset + limit if len(ids) > limit else None

    @translate_errors
    def get_run(self, run_id: str) -> PipelineRunRecord | None:
        raw = self.redis.hgetall(self.run_key(run_id))
        return PipelineRunRecord.from_redis(raw) if "status" in raw else None

    @translate_errors
    def status(self, run_id: str) -> RunStatus | None:
        raw = self.redis.hget(self.run_key(run_id), "status")
        return RunStatus(decode_value(raw)) if raw else None

    @translate_errors
    def write_run(self, run: PipelineRunRecord, due: float | None,
                  read: PipelineRunRecord | None = None) -> bool:
        """Write `run` if the stored run is still at `run.rev` (only the fields that differ
        from `read`, the run as it was read, when given: a large input is not written
        again on every move); `due` is when it must next be checked (None: it is
        finished). False when another writer won; the caller reads again and decides
        again."""
        names = [name for name in RUN_FIELDS.names if name != "rev"
                 and (read is None or getattr(run, name) != getattr(read, name))]
        args: list[str] = [str(run.rev), run.id, "" if due is None else repr(due)]
        for name in names:
            value, to_plain = getattr(run, name), RUN_FIELDS.plain.get(name)
            args += [name, encode_value(value if to_plain is None else to_plain(value))]
        return bool(self._write(keys=[self.run_key(run.id), self.ACTIVE_KEY], args=args) == 1)

    @translate_errors
    def due_runs(self, now: float) -> list[str]:
        return list(self.redis.zrangebyscore(self.ACTIVE_KEY, "-inf", now))

    @translate_errors
    def postpone(self, run_id: str, due: float) -> None:
        """Next check of a running run at `due` (only while it is still running)."""
        self.redis.zadd(self.ACTIVE_KEY, {run_id: due}, xx=True)

    @translate_errors
    def forget_active(self, run_id: str) -> None:
        self.redis.zrem(self.ACTIVE_KEY, run_id)

    # The step cache -----------------------------------------------------------------------

    @translate_errors
    def cached_job(self, owner: str, build_digest: str, input_digest: str) -> str | None:
        value = self.redis.get(self.cache_key(owner, build_digest, input_digest))
        return str(value) if value else None

    @translate_errors
    def remember(self, owner: str, build_digest: str, input_digest: str, job_id: str) -> None:
        """The job that computed this build's output for this input; it lives as long as
        a job record does."""
        self.redis.set(self.cache_key(owner, build_digest, input_digest), job_id,
                       ex=self.retention_s)

    @translate_errors
    def forget_cached(self, owner: str, build_digest: str, input_digest: str) -> None:
        self.redis.delete(self.cache_key(owner, build_digest, input_digest))
