"""One call's life inside a worker: claim the record, run it in a container, record it.

The record is claimed with a compare-and-set and held with a lease that the
worker renews while it waits; nothing here blocks on Celery or reads secrets
into the record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from algohost.artifacts.outputs import JobOutputs, Outputs
from algohost.clock import ms_between, now_iso
from algohost.config import Settings
from algohost.errors import (
    AlgohostError,
    BuildNotReady,
    ContainerStartFailed,
    NoFreeSlot,
    SandboxUnavailable,
)
from algohost.names import AlgorithmRef
from algohost.sandbox.base import CallOutcome, ContainerSpec, ExitReason, Limits, Session
from algohost.sandbox.runner import protocol
from algohost.store.jobs import (
    ArtifactInfo,
    ErrorInfo,
    JobRecord,
    JobStatus,
    JobStore,
    Metrics,
)
from algohost.store.registry import BuildRecord, BuildStatus, Registry
from algohost.store.usage import ComputeBudget
from algohost.worker.nesting import NestedCalls
from algohost.worker.redacting import Redactor
from algohost.worker.reported import ReportedMetrics

log = logging.getLogger(__name__)

ACQUIRE_SLICE_S = 1.0  # how long one wait for a free container lasts before the lease is renewed

LOST_PAUSE_S = 2.0  # times the attempt: the engine's restart takes seconds
LOST_PAUSE_MAX_S = 10.0
OUTCOME_STATUS = {
    ExitReason.SUCCEEDED: JobStatus.SUCCEEDED,
    ExitReason.TIMEOUT: JobStatus.TIMED_OUT,
    ExitReason.CANCELED: JobStatus.CANCELED,
}


def lost_to_sandbox(outcome: CallOutcome) -> bool:
    """Whether a call ended because the sandbox went away under it, not for anything the
    algorithm did (its own crash, the OOM killer, a timeout): such a call may run again."""
    return outcome.reason is ExitReason.SANDBOX_LOST


def lost_pause_s(attempt: int) -> float:
    """How long to wait before running a lost call again: the engine's restart takes seconds."""
    return min(LOST_PAUSE_S * attempt, LOST_PAUSE_MAX_S)


class Pool(Protocol):
    def acquire(self, spec: ContainerSpec, wait_s: float | None = None,
                nested: bool = False) -> tuple[Session, bool]: ...

    def release(self, session: Session, reusable: bool) -> None: ...

    def prewarm(self, spec: ContainerSpec) -> bool: ...


class JobHook(Protocol):
    """Cross-cutting work (webhooks, audit) hangs here, not on flags."""

    def job_started(self, job: JobRecord) -> None: ...

    def job_finished(self, job: JobRecord) -> None: ...


class SecretSource(Protocol):
    def for_build(self, build: BuildRecord) -> tuple[dict[str, str], str]:
        """(values by name, a version tag that changes when any value changes)."""
        ...


class NoSecrets:
    def for_build(self, build: BuildRecord) -> tuple[dict[str, str], str]:
        return {}, ""


class CancelWatch:
    """Polled by the sandbox while a call runs: renews the lease, spots a cancel."""

    def __init__(self, jobs: JobStore, job_id: str, lease_s: int,
                 clock: Callable[[], float] = time.time, every_s: float = 0.5,
                 outer: Callable[[], bool] | None = None) -> None:
        self.jobs, self.job_id, self.lease_s = jobs, job_id, lease_s
        # The parent's watch, for a call an algorithm made: polled with this one, it keeps
        # the parent's lease alive while the child runs and passes its cancel on.
        self.outer = outer
        self.clock, self.every_s = clock, every_s
        # The job was claimed a moment ago: no need to look before the first interval.
        self._next_check = clock() + every_s
        self._next_renew = clock() + lease_s / 3
        self.canceled = False

    def __call__(self) -> bool:
        if self.outer is not None and not self.canceled and self.outer():
            self.canceled = True
            self.jobs.transition(self.job_id, JobStatus.CANCELED,
                                 {JobStatus.QUEUED, JobStatus.RUNNING}, finished_at=now_iso(),
                                 reason="parent_canceled")
        if self.canceled:
            return True
        now = self.clock()
        if now >= self._next_check:
            self._next_check = now + self.every_s
            self.canceled = self.jobs.status(self.job_id) is JobStatus.CANCELED
        if now >= self._next_renew:
            self._next_renew = now + self.lease_s / 3
            self.jobs.renew_lease(self.job_id, now + self.lease_s)
        return self.canceled


def spec_for(build: BuildRecord, secrets: dict[str, str], secrets_version: str,
             mounts: tuple[tuple[str, str], ...] = (), caller: str = "") -> ContainerSpec:
    """A container of `build` serving `caller`'s calls only (the build's owner by default)."""
    tenant = caller or build.owner
    return ContainerSpec(
        build_id=build.id,
        image=build.image,
        limits=Limits.of(build.manifest.resources),
        labels={"algohost.algorithm": AlgorithmRef(build.owner, build.name).base,
                "algohost.caller": tenant},
        tenant=tenant,
        secrets=secrets,
        secrets_as_env=build.manifest.secrets.as_env,
        secrets_version=secrets_version,
        mounts=mounts,
    )


class JobRunner:
    def __init__(self, jobs: JobStore, registry: Registry, pool: Pool, settings: Settings,
                 worker_id: str, secrets: SecretSource | None = None,
                 hooks: Sequence[JobHook] = (), clock: Callable[[], float] = time.time,
                 outputs: Outputs | None = None,
                 requeue: Callable[[str], None] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 budget: ComputeBudget | None = None) -> None:
        self.jobs, self.registry, self.pool = jobs, registry, pool
        # Sends a job again when the engine was lost under it (None: fail it instead).
        self.requeue, self.sleep = requeue, sleep
        self.settings, self.worker_id = settings, worker_id
        self.clock = clock  # wall-clock seconds: leases are compared across workers
        self.secrets = secrets or NoSecrets()
        self.hooks = list(hooks)
        self.outputs = outputs
        self.budget = budget  # checked again for each call an algorithm makes

    def run(self, job_id: str, outer: Callable[[], bool] | None = None) -> None:
        """Run one job; `outer` is its parent's cancel watch when an algorithm called it."""
        claimed, job = self.jobs.claim(job_id, self.worker_id, now_iso(),
                                       self.clock() + self.settings.lease_s)
        if job is None:
            log.warning("job %s has no record (expired?); dropping the message", job_id)
            return
        if not claimed:
            # A redelivered message, or a job canceled while queued.
            log.info("job %s is %s; nothing to do", job_id, job.status)
            return
        self._emit("job_started", job)
        redactor = Redactor()  # learns the run's secret values once they are fetched
        try:
            self._execute(job, redactor, outer)
        except AlgohostError as exc:
            self._finish(job, JobStatus.FAILED, exc.code, error=redactor.failure(exc))
        except Exception as exc:  # the worker must survive anything a call does
            redactor.log_exception(log, "job %s failed inside the worker", job_id, exc=exc)
            self._finish(job, JobStatus.FAILED, "worker_error", error=redactor.failure(exc))

    def prewarm(self, build_id: str) -> bool:
        """One warm container of a build just made, as its owner's first call would want
        it (same secrets version, same mounts), if the pool has room; True if started."""
        build = self.registry.build_for_call(build_id)
        if build.status is not BuildStatus.SUCCEEDED:
            return False
        values, version = self.secrets.for_build(build)
        mounts = self.outputs.mounts(build) if self.outputs is not None else ()
        return self.pool.prewarm(spec_for(build, values, version, mounts))

    def _execute(self, job: JobRecord, redactor: Redactor,
                 outer: Callable[[], bool] | None = None) -> None:
        build = self.registry.build_for_call(job.build_id)
        if build.status is not BuildStatus.SUCCEEDED:
            raise BuildNotReady(f"{build.ref} was {build.status} after this job was queued")
        values, version = self.secrets.for_build(build)
        redactor.hide(values.values())
        mounts = self.outputs.mounts(build) if self.outputs is not None else ()
        spec = spec_for(build, values, version, mounts, caller=job.owner)
        max_logs = self.settings.sandbox.max_log_bytes
        watch = CancelWatch(self.jobs, job.id, self.settings.lease_s, self.clock, outer=outer)
        try:
            acquired = self._acquire(spec, watch, nested=job.depth > 0)
        except SandboxUnavailable as exc:  # the engine is away: the call never started
            self._sandbox_lost(job, "sandbox_unavailable",
                               {"type": "SandboxUnavailable", "message": exc.message,
                                "traceback": None})
            return
        except ContainerStartFailed as exc:
            error = exc.details.get("error") or {"type": "ContainerStartFailed",
                                                 "message": exc.message, "traceback": None}
            self._finish(job, JobStatus.FAILED, ExitReason.START_FAILED.value,
                         error=redactor.error(error, max_logs),
                         logs=redactor.logs(str(exc.details.get("logs", "")), max_logs,
                                            int(exc.details.get("logs_dropped", 0))))
            return
        if acquired is None:
            return  # canceled while it waited for a container: the cancel is recorded
        session, warm = acquired
        call_started = now_iso()
        outcome = CallOutcome(ExitReason.CRASHED)
        peer: JobOutputs | None = None
        reported = ReportedMetrics()
        try:
            calls = NestedCalls(self.jobs, self.registry, self.settings, job, self.run, watch,
                                budget=self.budget)
            peer = (self.outputs.for_job(job, build, {protocol.OP_METRIC_LOG: reported,
                                                      protocol.OP_CALL: calls})
                    if self.outputs is not None else None)
            outcome = session.call(job.input, float(job.timeout_s), watch, peer)
        finally:
            self.pool.release(session, outcome.reusable)
            if peer is not None and not outcome.succeeded:
                peer.discard()
        startup = "" if warm else \
            redactor.logs(session.startup_logs, max_logs, session.startup_logs_dropped)
        cold_start_ms = 0.0 if warm else round(session.cold_start_ms, 3)
        metrics: Metrics = {
            # Waiting for a free container counts as queueing; starting one does not.
            "queue_ms": round(max(ms_between(job.created_at, call_started) - cold_start_ms,
                                  0.0), 3),
            "cold_start_ms": cold_start_ms,
            "run_ms": round(outcome.run_ms, 3),
            "peak_memory_bytes": outcome.peak_memory_bytes,
        }
        if lost_to_sandbox(outcome):
            self._sandbox_lost(job, outcome.reason.value,
                               redactor.error(outcome.error, max_logs)
                               or {"type": "SandboxLost", "message": "the sandbox was lost",
                                   "traceback": None})
            return
        status = OUTCOME_STATUS.get(outcome.reason, JobStatus.FAILED)
        # Whatever the algorithm hands back may quote a secret: mask it before it is stored.
        logs = startup + redactor.logs(outcome.logs, max_logs, outcome.logs_dropped)
        self._finish(job, status, outcome.reason.value, output=redactor.output(outcome.output),
                     error=redactor.error(outcome.error, max_logs), logs=logs, warm=warm,
                     metrics=metrics, artifacts=peer.artifacts if peer else [],
                     custom_metrics=reported.values)

    def _sandbox_lost(self, job: JobRecord, reason: str, error: ErrorInfo) -> None:
        """The engine went away under the call, or was away when it was to start: nothing
        the algorithm did. Like a lost worker's job, it runs again (after a pause that lets
        the engine come back) until max_attempts, then fails with `reason`."""
        # A nested call runs inline in its caller's thread: it fails, and its caller decides.
        if (self.requeue is not None and job.depth == 0
                and job.attempts < self.settings.max_attempts):
            log.warning("job %s: %s (%s); running it again", job.id, reason, error["message"])
            self.sleep(lost_pause_s(job.attempts))
            # A cancel meanwhile wins: the transition finds the job no longer running.
            if self.jobs.transition(job.id, JobStatus.QUEUED, {JobStatus.RUNNING},
                                    worker=None):
                self.requeue(job.id)
            return
        self._finish(job, JobStatus.FAILED, reason, error=error)

    def _acquire(self, spec: ContainerSpec, watch: CancelWatch, nested: bool = False
                 ) -> tuple[Session, bool] | None:
        """A container for the call; while every slot is busy, keep the lease alive
        (a long wait must not look like a lost worker) and notice a cancel. A `nested`
        call may go past the pool's caps: its ancestors hold their containers until it ends."""
        while True:
            try:
                if nested:
                    return self.pool.acquire(spec, wait_s=ACQUIRE_SLICE_S, nested=True)
                return self.pool.acquire(spec, wait_s=ACQUIRE_SLICE_S)
            except NoFreeSlot:
                if watch():
                    return None

    def _finish(self, job: JobRecord, status: JobStatus, reason: str, *,
                output: Any = None, error: ErrorInfo | None = None, logs: str = "",
                warm: bool | None = None, metrics: Metrics | None = None,
                artifacts: list[ArtifactInfo] | None = None,
                custom_metrics: dict[str, float] | None = None) -> None:
        finished = now_iso()
        full_metrics: Metrics = {"queue_ms": 0.0, "cold_start_ms": 0.0, "run_ms": 0.0,
                                 "peak_memory_bytes": 0, **(metrics or {}),
                                 "total_ms": ms_between(job.created_at, finished)}
        fields: dict[str, Any] = {"finished_at": finished, "reason": reason,
                  "output": output if status is JobStatus.SUCCEEDED else None,
                  "error": error, "logs": logs, "warm": warm, "metrics": full_metrics,
                  "artifacts": artifacts or [], "custom_metrics": custom_metrics or {}}
        if self.jobs.transition(job.id, status, {JobStatus.RUNNING}, **fields):
            # What was just written is the whole record: no need to read it back.
            self._emit("job_finished", replace(job, status=status, **fields))
            return
        # Canceled meanwhile: keep the cancel, but record what the run measured.
        self.jobs.update(job.id, logs=logs, warm=warm, metrics=full_metrics,
                         custom_metrics=custom_metrics or {})
        record = self.jobs.get(job.id)
        if record is not None and self.hooks:
            self._emit("job_finished", record)

    def _emit(self, event: str, job: JobRecord) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, event)(job)
            except Exception:  # a hook must never lose a job's result
                log.exception("hook %s.%s failed for job %s", type(hook).__name__, event,
                              job.id)


def worker_lost(attempts: int) -> ErrorInfo:
    """The error recorded for work given up after its worker was lost `attempts` times."""
    return {"type": "WorkerLost", "message": f"the worker was lost {attempts} times",
            "traceback": None}


def reap_expired_leases(jobs: JobStore, enqueue: Callable[[str], None], max_attempts: int,
                        now: float | None = None) -> list[str]:
    """Re-enqueue running jobs whose worker stopped renewing; fail them past the limit."""
    reaped = []
    for job_id in jobs.expired_leases(time.time() if now is None else now):
        job = jobs.get(job_id)
        if job is None:
            continue
        if job.attempts < max_attempts:
            if jobs.transition(job_id, JobStatus.QUEUED, {JobStatus.RUNNING}, worker=None):
                enqueue(job_id)
                reaped.append(job_id)
        elif jobs.transition(job_id, JobStatus.FAILED, {JobStatus.RUNNING},
                             finished_at=now_iso(), reason="worker_lost",
                             error=worker_lost(job.attempts)):
            reaped.append(job_id)
    return reaped
