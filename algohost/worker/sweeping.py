"""The sweep controller: one small, idempotent step at a time, run when a trial's job ends.

A step settles trials whose jobs have finished, decides whether the sweep is done, and
submits new trials (ordinary jobs, through the same path as the API's) until
`parallelism` are in flight. It holds a short lock per sweep; a step asked for while
another runs is left as a mark the running one picks up. Everything it knows it reads
from the record, so a step after a worker was killed carries on where that one stopped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace

from algohost.clock import now_iso
from algohost.errors import (
    AlgohostError,
    LimitReached,
    RateLimited,
    ServiceUnavailable,
    StoreUnavailable,
)
from algohost.store.jobs import JobRecord, JobStore
from algohost.store.registry import Registry
from algohost.store.sweeps import SweepRecord, SweepStatus, SweepStore, Trial, TrialStatus
from algohost.submission import JobSubmitter, new_job_id
from algohost.sweepspace import SweepSpec
from algohost.worker.sampling import StudyCache, propose

log = logging.getLogger(__name__)

PARENT_PREFIX = "sweep:"
LOCK_S = 60  # a step that outlives this (a killed worker's) gives the sweep up to the next


def parent_of(sweep_id: str) -> str:
    return PARENT_PREFIX + sweep_id


def stop_reason(spec: SweepSpec, trials: list[Trial]) -> str | None:
    """Why no further trial should start, or None while more should."""
    if len(trials) >= spec.trials:
        return "budget_spent"
    if spec.pruning is None:
        return None
    best: float | None = None
    since_best = 0
    for trial in trials:
        if trial.status is not TrialStatus.SUCCEEDED or trial.objective is None:
            continue
        if spec.objective.better(trial.objective, best, spec.pruning.min_delta):
            best, since_best = trial.objective, 0
        else:
            since_best += 1
            if since_best >= spec.pruning.patience:
                return "no_improvement"
    return None


class SweepController:
    def __init__(self, sweeps: SweepStore, jobs: JobStore, registry: Registry,
                 submitter: JobSubmitter, lock_s: int = LOCK_S,
                 token: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.sweeps, self.jobs, self.registry = sweeps, jobs, registry
        self.submitter, self.lock_s, self.token = submitter, lock_s, token
        self.studies = StudyCache()

    def step(self, sweep_id: str) -> None:
        """Advance the sweep as far as it can go now; any worker may call it, any number
        of times."""
        self.sweeps.request_step(sweep_id)
        token = self.token()
        while self.sweeps.lock(sweep_id, token, self.lock_s):
            try:
                while self.sweeps.take_request(sweep_id):
                    self._advance_or_fail(sweep_id)
            finally:
                self.sweeps.unlock(sweep_id, token)
            # A request made while the lock was held and after the last take is ours.
            if not self.sweeps.requested(sweep_id):
                return

    def step_all(self) -> None:
        """The reaper's pass: a step for every running sweep (one whose step message was
        lost with its worker, or whose trial could not be submitted a moment ago)."""
        for sweep_id in self.sweeps.running():
            try:
                self.step(sweep_id)
            except StoreUnavailable:
                raise
            except Exception:
                log.exception("a step of sweep %s failed", sweep_id)

    def _advance_or_fail(self, sweep_id: str) -> None:
        """A step; one that breaks on something other than the store would break again
        on every retry, so the sweep fails, saying why, instead of stalling unseen."""
        try:
            self._advance(sweep_id)
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.exception("a step of sweep %s failed", sweep_id)
            self.sweeps.finish(sweep_id, SweepStatus.FAILED, reason="controller_error",
                               message=f"{type(exc).__name__}: {exc}"[:500],
                               finished_at=now_iso())

    def _advance(self, sweep_id: str) -> None:
        record = self.sweeps.get(sweep_id)
        if record is None:
            self.sweeps.forget(sweep_id)
            return
        spec = record.spec
        trials = self.sweeps.trials(sweep_id)
        if record.status is not SweepStatus.RUNNING:
            # Trials still in flight when it ended (a spent budget, a deleted version)
            # finish anyway: record how, and start nothing.
            self.studies.forget(sweep_id)
            for trial in trials:
                if trial.status is TrialStatus.RUNNING:
                    self._settle(record, trial, resubmit=False)
            return
        for index, trial in enumerate(trials):
            if trial.status is TrialStatus.RUNNING:
                trials[index] = self._settle(record, trial)
        while True:
            in_flight = sum(1 for t in trials if t.status is TrialStatus.RUNNING)
            reason = stop_reason(spec, trials)
            if reason is not None:
                if in_flight == 0:
                    self.sweeps.finish(sweep_id, SweepStatus.COMPLETED, reason=reason,
                                       finished_at=now_iso())
                    self.studies.forget(sweep_id)
                return
            if in_flight >= spec.parallelism:
                return
            params = propose(spec, trials, len(trials), self.studies, sweep_id)
            trial = Trial(number=len(trials), job_id=new_job_id(), params=params,
                          created_at=now_iso())
            if not self.sweeps.add_trial(sweep_id, trial):
                # Another step took that number (or the sweep ended): the study asked for a
                # trial that is not the record's.
                self.studies.forget(sweep_id)
                if self.sweeps.status(sweep_id) is not SweepStatus.RUNNING:
                    return
                trials = self.sweeps.trials(sweep_id)
                continue
            trials.append(trial)
            if not self._submit(record, trial):
                return

    def _settle(self, record: SweepRecord, trial: Trial, resubmit: bool = True) -> Trial:
        job = self.jobs.get(trial.job_id)
        if job is None:
            # Its number was taken but its job never written (a worker lost in between,
            # or the owner's limits refused it): submit it now.
            if resubmit:
                self._submit(record, trial)
                return trial
            ended = replace(trial, status=TrialStatus.FAILED, reason="not_started",
                            error=f"the sweep ended ({record.reason}) before it started",
                            finished_at=now_iso())
            self.sweeps.settle_trial(record.id, ended)
            return ended
        if not job.status.terminal:
            return trial
        done = trial.settled_by(job, record.spec.objective)
        if self.sweeps.settle_trial(record.id, done):
            return done
        return next((t for t in self.sweeps.trials(record.id) if t.number == trial.number),
                    done)

    def _submit(self, record: SweepRecord, trial: Trial) -> bool:
        """Submit the trial's job; False when the sweep cannot go on now."""
        spec = record.spec
        try:
            build = self.registry.build_for_call(record.build_id)
            self.submitter.submit(record.owner, record.requested, build,
                                  spec.trial_input(trial.params), timeout_s=spec.timeout_s,
                                  parent=parent_of(record.id), job_id=trial.job_id)
        except StoreUnavailable:
            raise
        except (RateLimited, LimitReached, ServiceUnavailable) as exc:
            # The trial keeps its number: a job refused by the owner's limits is submitted
            # again by the reaper's next step; one whose message was lost fails, and counts.
            log.warning("sweep %s: trial %d waits: %s", record.id, trial.number, exc.message)
            return False
        except AlgohostError as exc:
            log.warning("sweep %s failed: %s", record.id, exc.message)
            self.sweeps.finish(record.id, SweepStatus.FAILED, reason=exc.code,
                               message=exc.message, finished_at=now_iso())
            return False
        return True


class SweepHook:
    """A job hook: a trial's job that ends asks for a step of its sweep."""

    def __init__(self, enqueue_step: Callable[[str], None]) -> None:
        self.enqueue_step = enqueue_step

    def job_started(self, job: JobRecord) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        if job.parent and job.parent.startswith(PARENT_PREFIX):
            self.enqueue_step(job.parent.removeprefix(PARENT_PREFIX))
