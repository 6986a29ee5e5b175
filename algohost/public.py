"""What a caller sees of a job or a batch: one definition for API replies and webhook bodies.

Free of Flask, so workers render webhook bodies with exactly the models the API
answers with. Never exposes a record's internals (worker, lease, image, owner).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from algohost.store.batches import ITEM_STATUSES, BatchStatus
from algohost.store.jobs import JobStatus

# Jobs ----------------------------------------------------------------------------------


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    traceback: str | None = None


class JobMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    queue_ms: float | None = None
    cold_start_ms: float | None = None
    run_ms: float | None = None
    total_ms: float | None = None
    peak_memory_bytes: int | None = None


class JobArtifact(BaseModel):
    name: str = Field(description="The file's path under /outputs")
    sha256: str
    size: int
    media_type: str
    url: str = Field(description="Where to download it: /v1/artifacts/{sha256}")


class Job(BaseModel):
    id: str
    algorithm: str = Field(description="The exact build that runs it: owner/name@1.2.3")
    requested: str = Field(description="The algorithm as the caller named it")
    status: JobStatus
    reason: str | None
    input: Any = Field(default=None, description="Only with ?include=input")
    output: Any
    error: JobError | None
    logs: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    warm: bool | None
    timeout_s: int
    attempts: int
    metrics: JobMetrics | None
    webhook: str | None = Field(default=None, description="Where events of this job are sent")
    webhook_events: list[str] | None = Field(default=None, description="Which events are sent")
    artifacts: list[JobArtifact] = Field(
        default_factory=list, description="Files the call left under /outputs")


_JOB_FIELDS = ("id", "algorithm", "requested", "status", "reason", "output", "error", "logs",
               "created_at", "started_at", "finished_at", "warm", "timeout_s", "attempts",
               "metrics", "webhook", "webhook_events")


def public_job(record: dict[str, Any], include_input: bool = False) -> Job:
    """What a caller sees of a job record: never the owner's internals (worker, lease...)."""
    fields = {name: record.get(name) for name in _JOB_FIELDS}
    fields["artifacts"] = record.get("artifacts") or []
    if include_input:
        fields["input"] = record.get("input")
    return Job.model_validate(fields)


def render(model: BaseModel) -> str:
    """The JSON text of a reply, exactly as the API serves it."""
    return model.model_dump_json(exclude_unset=True)


# Batches -------------------------------------------------------------------------------


class BatchCounts(BaseModel):
    pending: int = Field(description="Inputs not finished yet")
    succeeded: int
    failed: int
    timed_out: int
    canceled: int


class Batch(BaseModel):
    id: str
    algorithm: str = Field(description="The exact build that runs it: owner/name@1.2.3")
    requested: str
    status: BatchStatus = Field(description="running until every input is finished")
    reason: str | None
    total: int = Field(description="How many inputs")
    counts: BatchCounts
    progress: float = Field(ge=0, le=1, description="Finished inputs / total")
    created_at: str
    finished_at: str | None
    timeout_s: int = Field(description="Wall-clock limit of each input's call")
    webhook: str | None
    webhook_events: list[str] | None


def public_batch(record: dict[str, Any], counts: dict[str, int]) -> Batch:
    total = int(record["total"])
    done = {status: int(counts.get(status, 0)) for status in ITEM_STATUSES}
    finished = sum(done.values())
    return Batch(
        id=record["id"], algorithm=record["algorithm"], requested=record["requested"],
        status=record["status"], reason=record.get("reason"), total=total,
        counts=BatchCounts(pending=max(total - finished, 0), **done),
        progress=round(finished / total, 4) if total else 1.0,
        created_at=record["created_at"], finished_at=record.get("finished_at"),
        timeout_s=int(record["timeout_s"]), webhook=record.get("webhook"),
        webhook_events=record.get("webhook_events"))


class BatchResult(BaseModel):
    index: int = Field(description="Position of the input, from 0")
    status: str = Field(description="pending, succeeded, failed, timed_out or canceled")
    reason: str | None = None
    output: Any = Field(default=None, description="Only when succeeded")
    error: JobError | None = Field(default=None, description="Only when not succeeded")
    logs: str | None = Field(default=None, description="The tail of the logs of a failure")
    metrics: dict[str, Any] | None = Field(default=None, description="run_ms, peak_memory_bytes")


def public_result(index: int, stored: dict[str, Any] | None) -> BatchResult:
    """One input's result; fields it does not have stay unset, so they are not shown."""
    if stored is None:
        return BatchResult(index=index, status="pending")
    return BatchResult(index=index, **stored)
