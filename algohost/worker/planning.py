"""One decision of the pipeline scheduler: from a run's record and the jobs it names, what
moves now (steps finished, skipped, reused from the cache, or ready to submit).

It reads through the functions it is given and writes nothing, so the same decision is
made whichever worker makes it; the scheduler (worker/pipelines.py) writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from algohost.clock import now_iso, parse_iso
from algohost.errors import AlgohostError
from algohost.pipeline import (
    Graph,
    PipelineSpec,
    Reference,
    Unresolvable,
    check,
    digest,
    resolve,
    step_algorithm,
)
from algohost.store.jobs import ErrorInfo, JobRecord, JobStatus
from algohost.store.pipelines import (
    UPSTREAM_FAILED,
    PipelineRunRecord,
    RunStatus,
    StepState,
    StepStatus,
)
from algohost.store.registry import BuildRecord
from algohost.submission import new_job_id

PARENT = "pipeline"
LOST_SUBMIT_S = 15.0  # a step queued this long ago whose job has no record is submitted again

JOB_STEP_STATUS = {
    JobStatus.QUEUED: StepStatus.QUEUED,
    JobStatus.RUNNING: StepStatus.RUNNING,
    JobStatus.SUCCEEDED: StepStatus.SUCCEEDED,
    JobStatus.FAILED: StepStatus.FAILED,
    JobStatus.TIMED_OUT: StepStatus.TIMED_OUT,
    JobStatus.CANCELED: StepStatus.CANCELED,
}


def parent_of(run_id: str, step: str) -> str:
    """What a step's job records as its parent: `pipeline:<run>:<step>`."""
    return f"{PARENT}:{run_id}:{step}"


def run_of(job: JobRecord) -> str | None:
    """The pipeline run a job is a step of, if it is one."""
    if not job.parent or not job.parent.startswith(PARENT + ":"):
        return None
    return job.parent.split(":", 2)[1]


_GRAPHS: dict[str, Graph] = {}  # by run id: a run's spec never changes
_GRAPHS_KEPT = 1000


def graph_of(run: PipelineRunRecord) -> Graph:
    """The run's checked graph, made once per run in this process."""
    graph = _GRAPHS.get(run.id)
    if graph is None:
        if len(_GRAPHS) >= _GRAPHS_KEPT:
            _GRAPHS.clear()
        graph = _GRAPHS[run.id] = check(PipelineSpec.model_validate(run.spec))
    return graph


def source_job(state: StepState) -> str | None:
    """The job whose output is the step's: its own, or the one a cached step reuses."""
    return state.cache_source if state.cached else state.job_id


@dataclass(frozen=True)
class StepJob:
    """A step's job, decided by a plan and submitted once the plan's write won."""

    job_id: str
    requested: str
    build: BuildRecord
    payload: Any
    timeout_s: int | None
    parent: str


@dataclass
class Plan:
    """What one advance decided: the run as it is to be written, the jobs to submit once
    that write wins, and cache entries to record."""

    run: PipelineRunRecord
    submits: list[StepJob] = field(default_factory=list)
    remember: list[tuple[str, str, str]] = field(default_factory=list)  # build, input, job


class Planner:
    """Decides one advance of one run from its record and the jobs it names; no writes."""

    def __init__(self, run: PipelineRunRecord, jobs: Callable[[str], JobRecord | None],
                 builds: Callable[[str], BuildRecord], cached: Callable[[str, str], str | None],
                 max_timeout_s: int, now: Callable[[], float] = time.time) -> None:
        self.run = replace(run, steps={k: replace(v) for k, v in run.steps.items()})
        self.graph = graph_of(run)
        self._jobs, self.builds, self.cached = jobs, builds, cached
        self.max_timeout_s, self.now = max_timeout_s, now
        self._seen: dict[str, JobRecord | None] = {}
        self.plan = Plan(self.run)

    def job(self, job_id: str) -> JobRecord | None:
        if job_id not in self._seen:
            self._seen[job_id] = self._jobs(job_id)
        return self._seen[job_id]

    def decide(self) -> Plan:
        steps = self.run.steps
        for name in self.graph.order:
            if steps[name].status.active:
                self._refresh(name, steps[name])
        progressed = True
        while progressed:  # a cached step finishes at once, and may free its dependents
            progressed = False
            for name in self.graph.order:
                if steps[name].status is StepStatus.PENDING:
                    progressed |= self._start_if_ready(name)
        self._conclude()
        return self.plan

    def _refresh(self, name: str, state: StepState) -> None:
        assert state.job_id is not None
        job = self.job(state.job_id)
        if job is None:
            submitted = parse_iso(state.submitted_at) if state.submitted_at else 0.0
            if self.now() - submitted > LOST_SUBMIT_S:
                # Refused by the owner's limits, or its scheduler died before the submit.
                state.status, state.job_id = StepStatus.PENDING, None
            return
        state.status = JOB_STEP_STATUS[job.status]
        state.started_at = job.started_at
        if job.status.terminal:
            state.finished_at, state.reason = job.finished_at, job.reason
            state.error, state.metrics = job.error, job.metrics
            state.artifacts = list(job.artifacts)
            if job.status is JobStatus.SUCCEEDED and state.input_digest:
                self.plan.remember.append((state.build_digest, state.input_digest, job.id))

    def _start_if_ready(self, name: str) -> bool:
        steps, state = self.run.steps, self.run.steps[name]
        needs = self.graph.needs[name]
        stopped = [need for need in needs if steps[need].status.terminal
                   and steps[need].status is not StepStatus.SUCCEEDED]
        if stopped:
            state.status, state.reason = StepStatus.SKIPPED, UPSTREAM_FAILED
            state.error = error_info("UpstreamFailed", f"step {stopped[0]!r} "
                                     f"{steps[stopped[0]].status.value}; this step never ran")
            state.finished_at = now_iso()
            return True
        if any(steps[need].status is not StepStatus.SUCCEEDED for need in needs):
            return False
        spec = self.graph.spec.steps[name]
        try:
            payload = resolve(spec.input, self._lookup)
        except Unresolvable as exc:
            self._fail(state, "input_unresolved", "InputUnresolved", str(exc))
            return True
        state.input_digest = digest(payload)
        if self.run.cache and spec.cache and self._reuse(state):
            return True
        try:
            build = self.builds(state.build_id)
        except AlgohostError as exc:
            self._fail(state, exc.code, type(exc).__name__, exc.message)
            return True
        timeout_s = None if spec.timeout_s is None else min(spec.timeout_s, self.max_timeout_s)
        requested = str(step_algorithm(spec.algorithm, self.run.owner))
        job = StepJob(new_job_id(), requested, build, payload, timeout_s,
                      parent_of(self.run.id, name))
        state.status, state.job_id = StepStatus.QUEUED, job.job_id
        state.attempts += 1
        state.submitted_at = now_iso()
        self.plan.submits.append(job)
        return False

    def _reuse(self, state: StepState) -> bool:
        assert state.input_digest is not None
        job_id = self.cached(state.build_digest, state.input_digest)
        job = self.job(job_id) if job_id else None
        if job is None or job.status is not JobStatus.SUCCEEDED:
            return False
        now = now_iso()
        state.status, state.cached, state.cache_source = StepStatus.SUCCEEDED, True, job.id
        state.job_id, state.reason, state.error = None, "cached", None
        state.started_at = state.finished_at = now
        state.metrics, state.artifacts = job.metrics, list(job.artifacts)
        return True

    def _lookup(self, reference: Reference) -> Any:
        if reference.step is None:
            return self.run.input
        job_id = source_job(self.run.steps[reference.step])
        job = self.job(job_id) if job_id else None
        if job is None:
            raise Unresolvable(reference.text, f"the output of step {reference.step!r} "
                                               "is no longer stored")
        return job.output

    def _fail(self, state: StepState, reason: str, kind: str, message: str) -> None:
        state.status, state.reason = StepStatus.FAILED, reason
        state.error = error_info(kind, message)
        state.finished_at = now_iso()

    def _conclude(self) -> None:
        run, steps = self.run, self.run.steps
        failed = next((name for name in self.graph.order if steps[name].status.terminal
                       and steps[name].status not in (StepStatus.SUCCEEDED, StepStatus.SKIPPED)),
                      None)
        if failed is not None and run.failed_step is None:
            state = steps[failed]
            message = state.error["message"] if state.error else state.reason or ""
            run.failed_step, run.reason = failed, "step_failed"
            run.error = error_info("StepFailed", f"step {failed!r} {state.status.value} "
                                                 f"({state.reason}): {message}")
        if not all(state.status.terminal for state in steps.values()):
            return
        run.finished_at = now_iso()
        if failed is not None:
            run.status = RunStatus.FAILED
            return
        template = self.graph.spec.output
        if template is None:
            template = {name: f"$steps.{name}.output" for name in self.graph.sinks}
        try:
            run.output = resolve(template, self._lookup)
        except Unresolvable as exc:
            run.status, run.reason = RunStatus.FAILED, "output_unresolved"
            run.error = error_info("OutputUnresolved", str(exc))
            return
        run.status, run.reason = RunStatus.SUCCEEDED, None


def error_info(kind: str, message: str) -> ErrorInfo:
    return {"type": kind, "message": message, "traceback": None}
