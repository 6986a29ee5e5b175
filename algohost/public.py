"""What a caller sees of a job, a build or a batch: one definition for API replies, webhook
bodies and the command line, which reads replies into these same models.

Free of Flask, so workers render webhook bodies with exactly the models the API
answers with. Never exposes a job's internals (worker, lease, image, owner).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from algohost.clock import ms_between
from algohost.notebooks import json_schema
from algohost.pipeline import Graph
from algohost.store.batches import ITEM_STATUSES, BatchRecord, BatchStatus, ItemResult
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.pipelines import (
    PipelineRunRecord,
    PipelineVersionRecord,
    RunStatus,
    StepStatus,
)
from algohost.store.registry import BuildRecord, BuildStatus
from algohost.store.sweeps import SweepRecord, SweepStatus, Trial, TrialStatus
from algohost.store.webhooks import AttemptEntry, DeliveryRecord, DeliveryState

# Jobs ----------------------------------------------------------------------------------


class FailedCell(BaseModel):
    index: int = Field(description="The cell's index in the notebook, from 0")
    source: str = Field(description="The first lines of the cell's source")


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    traceback: str | None = None
    cell: FailedCell | None = Field(default=None, description="A notebook's failing cell")


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
    custom_metrics: dict[str, float] = Field(
        default_factory=dict, description="What the algorithm reported with "
        "algohost_runtime.log_metric: the last value per name")
    royalty_micros: int = Field(default=0, description="What this call pays the algorithm's "
                                "author, in millionths of the currency unit (0 for your own)")
    parent_job: str | None = Field(default=None, description="The job whose algorithm made "
                                   "this call, if an algorithm made it")
    children: list[str] = Field(default_factory=list,
                                description="Jobs of the calls this job's algorithm made")
    depth: int = Field(default=0, description="0 for a call from outside; a child's is its "
                       "parent's + 1")
    parent: str | None = Field(default=None, description="What submitted it besides a "
                               "caller: sweep:<id> for a sweep's trial")


# Every field of the reply is a field of the record (a unit test holds them together).
_JOB_FIELDS = tuple(name for name in Job.model_fields if name != "input")


def public_job(record: JobRecord, include_input: bool = False) -> Job:
    """What a caller sees of a job record: never the owner's internals (worker, lease...)."""
    fields = {name: getattr(record, name) for name in _JOB_FIELDS}
    if include_input:
        fields["input"] = record.input
    return Job.model_validate(fields)


def render(model: BaseModel) -> str:
    """The JSON text of a reply, exactly as the API serves it."""
    return model.model_dump_json(exclude_unset=True)


# Builds --------------------------------------------------------------------------------


class Build(BaseModel):
    id: str
    owner: str
    name: str
    version: str
    ref: str = Field(description="owner/name@version")
    content_hash: str
    image: str
    status: BuildStatus
    created_at: str
    started_at: str | None
    finished_at: str | None
    manifest: dict[str, Any]
    error: str | None
    reason: str | None = Field(default=None, description="Why a build failed: build_failed, "
                               "build_timeout, build_disk_quota, ...")
    yanked: bool = Field(default=False, description="Hidden from ranges and @latest; exact "
                         "references still call it")
    yanked_at: str | None = None
    royalty_micros: int = Field(default=0, description="What each call by another owner pays "
                                "the author, in millionths of the currency unit")
    logs: str | None = Field(default=None, description="Build output; only on a single version")
    local_hash: str | None = Field(default=None, description="The content hash of the last "
                                   "successful local `algohost run`/`test`, sent with the publish")
    matches_local: bool | None = Field(
        default=None, description="true when the platform built exactly the source (and "
        "manifest) that last ran locally; false when it differs; null when none was reported")
    git_commit: str | None = Field(default=None, description="The commit it was published from")
    git_ref: str | None = Field(default=None, description="The ref that named that commit")
    parameters: dict[str, Any] | None = Field(
        default=None, description="A notebook's parameters (its cell tagged 'parameters') as "
        "the JSON schema of a call's input; null for a function algorithm")


_BUILD_FIELDS = tuple(name for name in Build.model_fields
                      if name not in ("manifest", "logs", "parameters"))


def public_build(record: BuildRecord, logs: str | None = None) -> Build:
    fields = {name: getattr(record, name) for name in _BUILD_FIELDS}
    fields["manifest"] = record.manifest.to_dict()
    if record.parameters is not None:
        fields["parameters"] = json_schema(record.parameters)
    if logs is not None:
        fields["logs"] = logs
    return Build.model_validate(fields)


# The catalogue -------------------------------------------------------------------------


class AlgorithmSummary(BaseModel):
    owner: str
    name: str
    latest: str | None = Field(description="The newest successful, unyanked version, if any")
    versions: list[str] = Field(description="Every version, newest first")
    visibility: Literal["private", "public"] = Field(
        default="private", description="public: listed, and callable by every key")
    description: str = Field(default="", description="From the latest version's manifest")
    parameters: dict[str, str] = Field(default_factory=dict,
                                       description="Input fields and what they mean, from "
                                                   "the latest version's manifest")
    royalty_micros: int = Field(default=0, description="What a call of the latest version by "
                                "another owner pays its author, in millionths of a unit")

    def mentions(self, word: str) -> bool:
        """Does `word` appear (any case) in the name, description or parameters?"""
        texts = [f"{self.owner}/{self.name}", self.description, *self.parameters,
                 *self.parameters.values()]
        return any(word.casefold() in text.casefold() for text in texts)


class AlgorithmList(BaseModel):
    algorithms: list[AlgorithmSummary]


# Webhook deliveries --------------------------------------------------------------------


class Attempt(BaseModel):
    at: str
    status_code: int | None = Field(description="The receiver's HTTP status, if it answered")
    latency_ms: float
    error: str | None
    response_body: str = Field(description="The first KiB of the receiver's reply")


class Delivery(BaseModel):
    id: str = Field(description="The webhook-id header: the same on every attempt")
    event: str = Field(description="started or completed")
    url: str
    state: DeliveryState
    created_at: str
    next_attempt_at: str | None = Field(description="When the next attempt is due, if any")
    attempts: list[Attempt]


class DeliveryList(BaseModel):
    deliveries: list[Delivery] = Field(description="Oldest first")


def public_delivery(delivery: DeliveryRecord, attempts: Sequence[AttemptEntry]) -> Delivery:
    return Delivery(id=delivery.id, event=delivery.event, url=delivery.url,
                    state=delivery.state, created_at=delivery.created_at,
                    next_attempt_at=delivery.next_attempt_at,
                    attempts=[Attempt.model_validate(a) for a in attempts])


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


def public_batch(record: BatchRecord, counts: Mapping[str, int]) -> Batch:
    total = record.total
    done = {status: int(counts.get(status, 0)) for status in ITEM_STATUSES}
    finished = sum(done.values())
    return Batch(
        id=record.id, algorithm=record.algorithm, requested=record.requested,
        status=record.status, reason=record.reason, total=total,
        counts=BatchCounts(pending=max(total - finished, 0), **done),
        progress=round(finished / total, 4) if total else 1.0,
        created_at=record.created_at, finished_at=record.finished_at,
        timeout_s=record.timeout_s, webhook=record.webhook,
        webhook_events=record.webhook_events)


class BatchResult(BaseModel):
    index: int = Field(description="Position of the input, from 0")
    status: str = Field(description="pending, succeeded, failed, timed_out or canceled")
    reason: str | None = None
    output: Any = Field(default=None, description="Only when succeeded")
    error: JobError | None = Field(default=None, description="Only when not succeeded")
    logs: str | None = Field(default=None, description="The tail of the logs of a failure")
    metrics: dict[str, Any] | None = Field(default=None, description="run_ms, peak_memory_bytes")


def public_result(index: int, stored: ItemResult | None) -> BatchResult:
    """One input's result; fields it does not have stay unset, so they are not shown."""
    if stored is None:
        return BatchResult(index=index, status="pending")
    return BatchResult.model_validate({"index": index, **stored})


class BatchResults(BaseModel):
    results: list[BatchResult] = Field(description="In input order; unfinished ones pending")
    next_cursor: str | None = Field(description="null on the last page")


# Pipelines -----------------------------------------------------------------------------


class PipelineVersion(BaseModel):
    owner: str
    name: str
    version: int = Field(description="Versions count from 1; publishing the latest spec "
                                     "again keeps its version")
    digest: str = Field(description="SHA-256 of the spec's canonical JSON")
    created_at: str
    order: list[str] = Field(description="The steps in an order they can run in")
    needs: dict[str, list[str]] = Field(description="Each step's dependencies")
    spec: dict[str, Any]


class PipelineList(BaseModel):
    pipelines: list[PipelineVersion] = Field(description="Each pipeline's latest version, "
                                                         "by name")


def public_pipeline(record: PipelineVersionRecord, graph: Graph) -> PipelineVersion:
    return PipelineVersion(owner=record.owner, name=record.name, version=record.version,
                           digest=record.digest, created_at=record.created_at,
                           order=list(graph.order),
                           needs={name: list(needs) for name, needs in graph.needs.items()},
                           spec=record.spec)


class PipelineStep(BaseModel):
    name: str
    algorithm: str = Field(description="The exact build it calls, pinned when the run started")
    needs: list[str] = Field(description="Steps it waits for")
    status: StepStatus
    reason: str | None = Field(description="Why it ended so: cached, upstream_failed, the "
                                           "job's reason...")
    job_id: str | None = Field(description="Its job (null while pending, and when cached)")
    cached: bool
    cache_source: str | None = Field(description="The earlier job whose result it reuses")
    attempts: int
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    metrics: JobMetrics | None
    artifacts: list[JobArtifact]
    error: JobError | None


class PipelineRun(BaseModel):
    id: str
    pipeline: str = Field(description="owner/name")
    version: int
    status: RunStatus
    reason: str | None = Field(description="step_failed, output_unresolved...")
    failed_step: str | None = Field(description="The first step that failed, once one has")
    error: JobError | None = Field(description="Which step failed and why")
    cache: bool
    input: Any = Field(default=None, description="Only with ?include=input")
    output: Any = Field(description="The spec's output template, resolved once it succeeded")
    created_at: str
    finished_at: str | None
    steps: list[PipelineStep] = Field(description="In an order they can run in")


def public_pipeline_run(record: PipelineRunRecord, graph: Graph,
                        live: Mapping[str, JobRecord | None] | None = None,
                        include_input: bool = False) -> PipelineRun:
    """The run's graph; a step whose job is under way shows that job's status as it is now
    (`live`, by job id), not as the scheduler last saw it."""
    live = live or {}
    steps = []
    for name in graph.order:
        state = record.steps[name]
        status, started = state.status, state.started_at
        job = live.get(state.job_id or "")
        if state.status.active and job is not None and not job.status.terminal:
            status, started = StepStatus(job.status.value), job.started_at
        duration = (ms_between(state.started_at, state.finished_at)
                    if state.started_at and state.finished_at else None)
        steps.append(PipelineStep(
            name=name, algorithm=state.algorithm, needs=list(graph.needs[name]), status=status,
            reason=state.reason, job_id=state.job_id, cached=state.cached,
            cache_source=state.cache_source, attempts=state.attempts, started_at=started,
            finished_at=state.finished_at, duration_ms=duration,
            metrics=None if state.metrics is None else JobMetrics.model_validate(state.metrics),
            artifacts=[JobArtifact.model_validate(a) for a in state.artifacts],
            error=None if state.error is None else JobError.model_validate(state.error)))
    run = PipelineRun(
        id=record.id, pipeline=record.pipeline, version=record.version, status=record.status,
        reason=record.reason, failed_step=record.failed_step,
        error=None if record.error is None else JobError.model_validate(record.error),
        cache=record.cache, output=record.output, created_at=record.created_at,
        finished_at=record.finished_at, steps=steps)
    if include_input:
        run.input = record.input
    return run


# Sweeps --------------------------------------------------------------------------------


class SweepTrial(BaseModel):
    rank: int | None = Field(description="1 is the best objective; null unless succeeded")
    number: int = Field(description="Trials are numbered from 0 in the order they started")
    status: TrialStatus
    params: dict[str, Any]
    objective: float | None
    job: str = Field(description="The job that ran the trial: /v1/jobs/{job}")
    duration_ms: float | None = Field(description="The job's total_ms")
    reason: str | None = Field(description="Why a trial failed: the job's reason, or "
                                           "objective_missing")
    error: str | None
    artifacts: list[JobArtifact] = Field(description="Files the trial's call left")
    created_at: str
    finished_at: str | None


class SweepCounts(BaseModel):
    running: int
    succeeded: int
    failed: int
    pending: int = Field(description="Trials of the budget not started yet")


class Sweep(BaseModel):
    id: str
    algorithm: str = Field(description="The exact build every trial runs: owner/name@1.2.3")
    requested: str
    status: SweepStatus
    reason: str | None = Field(description="Why it ended: budget_spent, no_improvement, or "
                                           "the code of the error that stopped it")
    message: str | None
    strategy: str
    objective: dict[str, str] = Field(description="key and direction")
    trials_budget: int = Field(description="Most trials it runs (a grid: its size)")
    parallelism: int
    seed: int
    spec: dict[str, Any] = Field(description="The sweep as it runs, defaults filled in")
    counts: SweepCounts
    best: SweepTrial | None
    trials: list[SweepTrial] = Field(description="Ranked: succeeded trials best first, then "
                                                 "the others by number")
    created_at: str
    finished_at: str | None


class SweepList(BaseModel):
    sweeps: list[Sweep] = Field(description="Newest first, without their trials")


def ranked(record: SweepRecord, trials: Sequence[Trial]) -> list[SweepTrial]:
    """The leaderboard: the best objective first (ties by trial number), then the rest."""
    sign = -1.0 if record.spec.objective.direction.value == "maximize" else 1.0
    done = sorted((t for t in trials if t.objective is not None
                   and t.status is TrialStatus.SUCCEEDED),
                  key=lambda t: (sign * (t.objective or 0.0), t.number))
    ranked_numbers = {t.number for t in done}
    rest = sorted((t for t in trials if t.number not in ranked_numbers), key=lambda t: t.number)
    return [_trial(rank, t) for rank, t in enumerate(done, 1)] + [_trial(None, t) for t in rest]


def _trial(rank: int | None, trial: Trial) -> SweepTrial:
    return SweepTrial(rank=rank, number=trial.number, status=trial.status, params=trial.params,
                      objective=trial.objective, job=trial.job_id,
                      duration_ms=trial.duration_ms, reason=trial.reason, error=trial.error,
                      artifacts=[JobArtifact.model_validate(a) for a in trial.artifacts],
                      created_at=trial.created_at, finished_at=trial.finished_at)


def public_sweep(record: SweepRecord, trials: Sequence[Trial] | None) -> Sweep:
    """A sweep and its ranked trials (none listed when `trials` is None)."""
    spec = record.spec
    table = ranked(record, trials or [])
    statuses = [t.status for t in trials or []]
    counts = SweepCounts(running=statuses.count(TrialStatus.RUNNING),
                         succeeded=statuses.count(TrialStatus.SUCCEEDED),
                         failed=statuses.count(TrialStatus.FAILED),
                         pending=max(spec.trials - len(statuses), 0)
                         if record.status is SweepStatus.RUNNING else 0)
    return Sweep(id=record.id, algorithm=record.algorithm, requested=record.requested,
                 status=record.status, reason=record.reason, message=record.message,
                 strategy=spec.strategy.value,
                 objective={"key": spec.objective.key,
                            "direction": spec.objective.direction.value},
                 trials_budget=spec.trials, parallelism=spec.parallelism, seed=spec.seed,
                 spec=spec.to_plain(), counts=counts,
                 best=table[0] if table and table[0].rank == 1 else None,
                 trials=table if trials is not None else [],
                 created_at=record.created_at, finished_at=record.finished_at)


class PipelineRunSummary(BaseModel):
    id: str
    pipeline: str
    version: int
    status: RunStatus
    reason: str | None
    failed_step: str | None
    created_at: str
    finished_at: str | None
    steps: int = Field(description="How many steps the run has")
    finished_steps: int
    cached_steps: int


class PipelineRunList(BaseModel):
    runs: list[PipelineRunSummary] = Field(description="Newest first")
    next_cursor: str | None = Field(description="null on the last page")


def public_run_summary(record: PipelineRunRecord) -> PipelineRunSummary:
    states = record.steps.values()
    return PipelineRunSummary(
        id=record.id, pipeline=record.pipeline, version=record.version, status=record.status,
        reason=record.reason, failed_step=record.failed_step, created_at=record.created_at,
        finished_at=record.finished_at, steps=len(record.steps),
        finished_steps=sum(state.status.terminal for state in states),
        cached_steps=sum(state.cached for state in states))
