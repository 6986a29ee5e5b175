"""Pipelines: publish a spec as a new version, start a run, read a run's graph.

The API checks the spec and pins each step's build when a run starts; it writes the run and
sends one advance message. Steps are submitted by the scheduler in the workers, as jobs.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import replace

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from algohost.api.auth import current_owner, require_owner
from algohost.api.context import services
from algohost.api.jobs import CANCELABLE, cancel_descendants
from algohost.api.routing import Reply, route
from algohost.api.schemas import JobView, JsonValue
from algohost.clock import now_iso
from algohost.errors import (
    AlgohostError,
    InvalidRequest,
    PipelineNotFound,
    PipelineRunNotCancelable,
    PipelineRunNotFound,
    ServiceUnavailable,
    UnknownAlgorithm,
)
from algohost.names import OWNER, PIPELINE_NAME, AlgorithmRef
from algohost.pipeline import (
    Graph,
    PipelineSpec,
    VersionNumber,
    check,
    spec_digest,
    step_algorithm,
)
from algohost.public import (
    PipelineList,
    PipelineRun,
    PipelineRunList,
    PipelineVersion,
    public_pipeline,
    public_pipeline_run,
    public_run_summary,
)
from algohost.store.jobs import JobStatus
from algohost.store.pipelines import (
    PipelineRunRecord,
    PipelineStore,
    PipelineVersionRecord,
    RunStatus,
    StepState,
    StepStatus,
)

log = logging.getLogger(__name__)
bp = Blueprint("pipelines", __name__)

VERSION_PATTERN = r"^[1-9][0-9]{0,8}$"
PIPELINE_PATH = {"owner": rf"^{OWNER.pattern.pattern}$",
                 "name": rf"^{PIPELINE_NAME.pattern.pattern}$"}


class RunListQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pipeline: str | None = Field(default=None, pattern=PIPELINE_PATH["name"],
                                 description="Only the runs of this pipeline of yours")
    limit: int = Field(default=20, ge=1, le=200, description="How many runs, newest first")
    cursor: str | None = Field(default=None, pattern=r"^[0-9]{1,9}$",
                               description="next_cursor of the previous page")


class RunCreate(BaseModel):
    """A run of a pipeline's version (the latest unless given)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    input: JsonValue = Field(default=None, description="The run's input: `$input` in the spec")
    version: VersionNumber | None = Field(default=None, description="Default: the latest")
    cache: bool = Field(default=True, description="false: run every step, reusing nothing")


def new_run_id() -> str:
    return "pr_" + uuid.uuid4().hex[:24]


def _store() -> PipelineStore:
    store = services().pipelines
    if store is None:
        raise RuntimeError("the app was made without a pipeline store")
    return store


def _check_names(owner: str, name: str) -> None:
    OWNER.check(owner, where="owner")
    PIPELINE_NAME.check(name, where="name")
    require_owner(owner, f"pipeline {owner}/{name}")


def _callable(owner: str, ref: AlgorithmRef) -> bool:
    """The pipeline's owner may call `ref`, as `POST /v1/jobs` would let it: its own, or
    another owner's public algorithm (another's private one is unknown to it)."""
    registry = services().registry
    if ref.owner == owner:
        return registry.exists(ref.owner, ref.name)
    return registry.is_public(ref.owner, ref.name)


def _check_algorithms(owner: str, graph: Graph) -> None:
    """Every step calls an algorithm the pipeline's owner may call."""
    unknown = []
    for name, step in graph.spec.steps.items():
        if not _callable(owner, step_algorithm(step.algorithm, owner)):
            unknown.append({"field": f"steps.{name}.algorithm", "step": name,
                            "algorithm": step.algorithm})
    if unknown:
        shown = ", ".join(f"{u['step']!r} ({u['algorithm']})" for u in unknown[:5])
        raise UnknownAlgorithm(f"steps call algorithms that do not exist: {shown}",
                               problems=unknown)


@route(bp, "POST", "/v1/pipelines/<owner>/<name>", summary="Publish a pipeline spec as its "
       "next version (the latest version again when the spec is unchanged)",
       body=PipelineSpec, responses={201: PipelineVersion, 200: PipelineVersion},
       errors=(403, 404), path=PIPELINE_PATH)
def publish_pipeline(owner: str, name: str, body: PipelineSpec) -> Reply:
    _check_names(owner, name)
    graph = check(body)
    _check_algorithms(owner, graph)
    spec = body.model_dump(mode="json")
    record, created = _store().publish(owner, name, spec_digest(body), spec, now_iso())
    return Reply(public_pipeline(record, graph), 201 if created else 200,
                 {"Location": f"/v1/pipelines/{owner}/{name}/versions/{record.version}"})


def _version(owner: str, name: str, number: int | None) -> PipelineVersionRecord:
    record = _store().version(owner, name, number)
    if record is None:
        which = "no version" if number is None else f"no version {number}"
        raise PipelineNotFound(f"pipeline {owner}/{name} has {which}")
    return record


@route(bp, "GET", "/v1/pipelines", summary="List your pipelines, each at its latest version",
       responses={200: PipelineList})
def list_pipelines() -> Reply:
    store, owner = _store(), current_owner()
    versions = [store.version(owner, name) for name in store.names(owner)]
    return Reply(PipelineList(pipelines=[
        public_pipeline(version, check(PipelineSpec.model_validate(version.spec)))
        for version in versions if version is not None]))


@route(bp, "GET", "/v1/pipelines/<owner>/<name>", summary="Read a pipeline's latest version",
       responses={200: PipelineVersion}, errors=(403, 404), path=PIPELINE_PATH)
def get_pipeline(owner: str, name: str) -> Reply:
    _check_names(owner, name)
    record = _version(owner, name, None)
    return Reply(public_pipeline(record, check(PipelineSpec.model_validate(record.spec))))


@route(bp, "GET", "/v1/pipelines/<owner>/<name>/versions/<version>",
       summary="Read one version of a pipeline", responses={200: PipelineVersion},
       errors=(403, 404), path={**PIPELINE_PATH, "version": VERSION_PATTERN})
def get_pipeline_version(owner: str, name: str, version: str) -> Reply:
    _check_names(owner, name)
    if not re.fullmatch(VERSION_PATTERN[1:-1], version):
        raise InvalidRequest(f"a pipeline version is a whole number from 1; got {version[:20]!r}")
    record = _version(owner, name, int(version))
    return Reply(public_pipeline(record, check(PipelineSpec.model_validate(record.spec))))


@route(bp, "POST", "/v1/pipelines/<owner>/<name>/runs", summary="Start a run of a pipeline",
       body=RunCreate, responses={202: PipelineRun}, errors=(402, 403, 404, 409),
       response_headers={"Location": "The run's URL"}, path=PIPELINE_PATH)
def start_run(owner: str, name: str, body: RunCreate) -> Reply:
    _check_names(owner, name)
    svc = services()
    if svc.budget is not None:  # its steps would each be refused: say so now
        svc.budget.check(owner)
    version = _version(owner, name, body.version)
    graph = check(PipelineSpec.model_validate(version.spec))
    _check_algorithms(owner, graph)  # one made private since is no longer callable
    steps = {}
    for step_name in graph.order:
        ref = step_algorithm(graph.spec.steps[step_name].algorithm, owner)
        try:
            build = svc.registry.resolve(ref.owner, ref.name, ref.version)
        except AlgohostError as exc:  # not found, or not built yet: say which step
            raise type(exc)(f"step {step_name!r}: {exc.message}",
                            **{**exc.details, "step": step_name}) from exc
        steps[step_name] = StepState(algorithm=build.ref, build_id=build.id,
                                     build_digest=build.content_hash)
    run = PipelineRunRecord(
        id=new_run_id(), owner=owner, status=RunStatus.RUNNING, pipeline=f"{owner}/{name}",
        version=version.version, spec=version.spec, input=body.input, cache=body.cache,
        created_at=now_iso(), steps=steps)
    store = _store()
    store.create_run(run, due=time.time() + svc.settings.lease_s)
    try:
        svc.dispatcher.enqueue_pipeline(run.id)
    except Exception:  # the broker's errors vary by transport
        # Accepted all the same: the workers' reaper starts a run that is due.
        log.exception("could not send the first advance of pipeline run %s", run.id)
        store.postpone(run.id, time.time())
    return Reply(public_pipeline_run(run, graph), 202,
                 {"Location": f"/v1/pipeline-runs/{run.id}"})


def _owned_run(run_id: str) -> PipelineRunRecord:
    record = _store().get_run(run_id) if len(run_id) <= 64 else None
    if record is None:
        raise PipelineRunNotFound(f"pipeline run {run_id[:64]} does not exist (or has expired)")
    require_owner(record.owner, f"pipeline run {run_id}")
    return record


@route(bp, "GET", "/v1/pipeline-runs", summary="List your pipeline runs, newest first",
       query=RunListQuery, responses={200: PipelineRunList})
def list_runs(query: RunListQuery) -> Reply:
    runs, following = _store().list_runs(current_owner(), query.pipeline, query.limit,
                                         int(query.cursor or 0))
    return Reply(PipelineRunList(runs=[public_run_summary(run) for run in runs],
                                 next_cursor=None if following is None else str(following)))


@route(bp, "GET", "/v1/pipeline-runs/<run_id>", summary="Read a pipeline run: its graph, "
       "each step's status, job, timings and artifacts", query=JobView,
       responses={200: PipelineRun}, errors=(403, 404))
def get_run(run_id: str, query: JobView) -> Reply:
    svc = services()
    record = _owned_run(run_id)
    graph = check(PipelineSpec.model_validate(record.spec))
    live = {state.job_id: svc.jobs.get(state.job_id) for state in record.steps.values()
            if state.status.active and state.job_id}
    return Reply(public_pipeline_run(record, graph, live, query.include == "input"))


MAX_CANCEL_TRIES = 20


def _canceled(run: PipelineRunRecord) -> tuple[PipelineRunRecord, list[str]]:
    """The run as canceled, and the jobs of its steps that were under way."""
    now, under_way = now_iso(), []
    steps = {name: replace(state) for name, state in run.steps.items()}
    for state in steps.values():
        if state.status.active and state.job_id:
            under_way.append(state.job_id)
            state.status = StepStatus.CANCELED
        elif state.status is StepStatus.PENDING:
            state.status = StepStatus.SKIPPED
        else:
            continue
        state.reason, state.finished_at = "canceled", now
    return replace(run, status=RunStatus.CANCELED, reason="canceled", finished_at=now,
                   steps=steps), under_way


def _cancel_job(job_id: str) -> None:
    svc = services()
    if not svc.jobs.transition(job_id, JobStatus.CANCELED, CANCELABLE, finished_at=now_iso(),
                               reason="canceled"):
        return  # finished meanwhile, or never written: nothing runs
    record = svc.jobs.get(job_id)
    if record is None:
        return
    cancel_descendants(record)
    try:
        svc.fair.finished(record.owner, job_id)
    except Exception:  # the lease reaper's repair gives the slot back later
        log.exception("releasing the slot of job %s failed", job_id)


@route(bp, "POST", "/v1/pipeline-runs/<run_id>/cancel", summary="Cancel a running pipeline "
       "run: its steps under way are canceled, the rest never start",
       query=JobView, responses={200: PipelineRun}, errors=(403, 404, 409))
def cancel_run(run_id: str, query: JobView) -> Reply:
    store = _store()
    for _ in range(MAX_CANCEL_TRIES):
        run = _owned_run(run_id)
        if run.status.terminal:
            raise PipelineRunNotCancelable(f"pipeline run {run_id} is already {run.status}",
                                           status=run.status.value)
        canceled, under_way = _canceled(run)
        if store.write_run(canceled, None, run):
            for job_id in under_way:
                _cancel_job(job_id)
            graph = check(PipelineSpec.model_validate(run.spec))
            return Reply(public_pipeline_run(replace(canceled, rev=run.rev + 1), graph,
                                             include_input=query.include == "input"))
    raise ServiceUnavailable(f"pipeline run {run_id} kept moving; cancel it again")
