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
from dataclasses import replace

from algohost.clock import now_iso
from algohost.errors import (
    AlgohostError,
    LimitReached,
    PaymentRequired,
    RateLimited,
    ServiceUnavailable,
)
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.pipelines import PipelineRunRecord, PipelineStore, RunStatus
from algohost.store.registry import Registry
from algohost.submission import JobSubmitter
from algohost.worker.planning import LOST_SUBMIT_S, Plan, Planner, StepJob, error_info, run_of

log = logging.getLogger(__name__)

MAX_WRITE_TRIES = 20  # lost compare-and-sets before this advance leaves the run to the next


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
            error=error_info(type(exc).__name__, exc.message)))


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

