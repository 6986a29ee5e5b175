"""The pipeline scheduler: reads a run's record, decides what moves, writes it back with a
compare-and-set, and only then submits the steps that became ready, as ordinary jobs.

Advancing is idempotent and cheap, so it runs whenever anything may have changed: when a
step's job finishes (its worker's job hook advances the run), when the run starts (an
advance message), and when a run is overdue for a check (a lost worker's runs are sent
an advance message again by every worker's reaper).
It never waits on a job and never nests Celery work.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from algohost.clock import now_iso, parse_iso
from algohost.errors import (
    AlgohostError,
    LimitReached,
    PaymentRequired,
    RateLimited,
    ServiceUnavailable,
)
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
from algohost.store.jobs import ErrorInfo, JobRecord, JobStatus, JobStore
from algohost.store.pipelines import (
    UPSTREAM_FAILED,
    PipelineRunRecord,
    PipelineStore,
    RunStatus,
    StepState,
    StepStatus,
)
from algohost.store.registry import BuildRecord, Registry
from algohost.submission import JobSubmitter, new_job_id

log = logging.getLogger(__name__)

PARENT = "pipeline"
MAX_WRITE_TRIES = 20  # lost compare-and-sets before this advance leaves the run to the next
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


def graph_of(run: PipelineRunRecord) -> Graph:
    return check(PipelineSpec.model_validate(run.spec))


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
            state.error = _error("UpstreamFailed", f"step {stopped[0]!r} "
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
        state.error = _error(kind, message)
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
            run.error = _error("StepFailed", f"step {failed!r} {state.status.value} "
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
            run.error = _error("OutputUnresolved", str(exc))
            return
        run.status, run.reason = RunStatus.SUCCEEDED, None


def _error(kind: str, message: str) -> ErrorInfo:
    return {"type": kind, "message": message, "traceback": None}


class Scheduler:
    """Advances runs: plan, compare-and-set, then submit what the winning plan started."""

    def __init__(self, runs: PipelineStore, jobs: JobStore, registry: Registry,
                 submitter: JobSubmitter, lease_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.runs, self.jobs, self.registry, self.submitter = runs, jobs, registry, submitter
        self.max_timeout_s, self.lease_s, self.clock = submitter.max_timeout_s, lease_s, clock

    def advance(self, run_id: str) -> PipelineRunRecord | None:
        """Move the run as far as it goes now; returns it as written (None: no record)."""
        for _ in range(MAX_WRITE_TRIES):
            run = self.runs.get_run(run_id)
            if run is None or run.status.terminal:
                self.runs.forget_active(run_id)
                return run
            plan = Planner(run, self.jobs.get, self.registry.build_for_call,
                           functools.partial(self.runs.cached_job, run.owner),
                           self.max_timeout_s, self.clock).decide()
            if plan.run == run:
                self.runs.postpone(run_id, self.clock() + self.lease_s)
                return run
            due = None if plan.run.status.terminal else self.clock() + self.lease_s
            if self.runs.write_run(plan.run, due, run):
                self._carry_out(plan)
                return replace(plan.run, rev=run.rev + 1)
        log.warning("pipeline run %s: lost %d writes in a row; the next advance goes on",
                    run_id, MAX_WRITE_TRIES)
        return None

    def _carry_out(self, plan: Plan) -> None:
        for build_digest, input_digest, job_id in plan.remember:
            self.runs.remember(plan.run.owner, build_digest, input_digest, job_id)
        ended = False  # a job that ended at its submit: record it now, not at the next check
        if plan.submits and self.runs.status(plan.run.id) is not RunStatus.RUNNING:
            return  # canceled since this plan was written: its steps never start
        for job in plan.submits:
            try:
                self.submitter.submit(plan.run.owner, job.requested, job.build, job.payload,
                                      timeout_s=job.timeout_s, parent=job.parent,
                                      job_id=job.job_id)
            except (LimitReached, RateLimited) as exc:
                # Its record is gone; the step is submitted again once LOST_SUBMIT_S passed.
                log.info("step job %s of run %s waits: %s", job.job_id, plan.run.id,
                         exc.message)
                self.runs.postpone(plan.run.id, self.clock() + LOST_SUBMIT_S + 1)
            except ServiceUnavailable:
                ended = True  # the submitter failed the job (enqueue_failed)
            except PaymentRequired as exc:
                self._refused(plan.run.owner, job, exc)
                ended = True
        if ended:
            self.advance(plan.run.id)

    def _refused(self, owner: str, job: StepJob, exc: AlgohostError) -> None:
        """Refused before anything was written: a failed record says why, so the step
        fails with it."""
        now = now_iso()
        self.jobs.create(JobRecord(
            id=job.job_id, owner=owner, status=JobStatus.FAILED, requested=job.requested,
            algorithm=job.build.ref, build_id=job.build.id, input=job.payload,
            created_at=now, finished_at=now, reason=exc.code, parent=job.parent,
            error=_error(type(exc).__name__, exc.message)))


class PipelineHook:
    """A job hook: the worker that finished a step's job advances its run at once (no
    message in between), and sends an advance message instead if that fails."""

    def __init__(self, advance: Callable[[str], object],
                 enqueue_advance: Callable[[str], None]) -> None:
        self.advance, self.enqueue_advance = advance, enqueue_advance

    def job_started(self, job: JobRecord) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        run_id = run_of(job)
        if run_id is None:
            return
        try:
            self.advance(run_id)
        except Exception:  # the run is advanced by a message, or else by the reaper
            log.exception("advancing pipeline run %s after job %s failed", run_id, job.id)
            self.enqueue_advance(run_id)


def redrive_due_runs(runs: PipelineStore, enqueue_advance: Callable[[str], None],
                     lease_s: float, now: float | None = None) -> list[str]:
    """Send an advance for every running run overdue for a check (its scheduler or its
    message was lost); each is due again a lease later."""
    moment = time.time() if now is None else now
    sent = []
    for run_id in runs.due_runs(moment):
        runs.postpone(run_id, moment + lease_s)
        enqueue_advance(run_id)
        sent.append(run_id)
    return sent

