"""The one path a job takes into the system: its record, the owner's fair share, a message
sent at the broker priority the fair share gives it.

The API's `POST /v1/jobs` and the controllers that submit jobs of their own (a sweep's
trials) go through `JobSubmitter.submit`, so every job is admitted, limited and enqueued
the same way. A job whose message cannot be sent is failed here, never left queued; where
the broker is the store's Redis the admission's script sends it (no job without message).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from algohost.clock import now_iso
from algohost.errors import ServiceUnavailable
from algohost.notebooks import check_call_input
from algohost.store.fairshare import FairShare
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.registry import BuildRecord, Pointer, royalty_of
from algohost.store.usage import ComputeBudget

log = logging.getLogger(__name__)


def new_job_id() -> str:
    return "j_" + uuid.uuid4().hex[:24]


class JobSubmitter:
    def __init__(self, jobs: JobStore, fair: FairShare, enqueue: Callable[[str, int], None],
                 max_timeout_s: int, budget: ComputeBudget | None = None,
                 message: Callable[[str], str | None] = lambda job_id: None) -> None:
        self.jobs, self.fair, self.enqueue = jobs, fair, enqueue
        self.max_timeout_s = max_timeout_s
        self.budget = budget
        # A job's broker message for the admission to push itself (Dispatcher.run_message);
        # None: `enqueue` sends it after the admission.
        self.message = message

    def submit(self, owner: str, requested: str, build: BuildRecord, payload: Any, *,
               timeout_s: int | None = None, webhook: str | None = None,
               webhook_events: Sequence[str] = (), parent: str | None = None,
               job_id: str | None = None, pointer: Pointer | None = None) -> JobRecord:
        """Write the job, admit it (or hold it in the owner's backlog) and send its id.

        Over the owner's limits the admission removes the record and raises (429); with
        the owner's compute budget for the day spent nothing is written (402). A
        notebook's input must name only its parameters (400). With `pointer` (the
        registry's cached lookup of `build`) nothing is written unless it still names
        `build`: PointerMoved, and the caller looks the build up again."""
        if build.parameters is not None:
            check_call_input(build.parameters, payload)
        if self.budget is not None:
            self.budget.check(owner)
        job = JobRecord(
            id=job_id or new_job_id(), owner=owner, status=JobStatus.QUEUED,
            requested=requested, algorithm=build.ref, build_id=build.id, image=build.image,
            input=payload, created_at=now_iso(),
            timeout_s=timeout_s or min(build.manifest.resources.timeout_s, self.max_timeout_s),
            webhook=webhook, webhook_events=list(webhook_events) if webhook else [],
            parent=parent, royalty_micros=royalty_of(build, owner))
        # The record is written, and the message sent, by the admission's script: one
        # round trip for all three.
        admission = self.fair.admit(owner, job.id, self.jobs.owner_index_key(owner),
                                    record=self.jobs.creation(job), message=self.message(job.id),
                                    pointer=pointer)
        if admission.sent and not admission.pushed:
            self._send(job.id, owner, admission.priority)
        return job

    def _send(self, job_id: str, owner: str, priority: int) -> None:
        try:
            self.enqueue(job_id, priority)
        except Exception as exc:  # the broker's errors vary by transport
            log.exception("could not enqueue job %s", job_id)
            self.jobs.transition(job_id, JobStatus.FAILED, {JobStatus.QUEUED},
                                 finished_at=now_iso(), reason="enqueue_failed",
                                 error={"type": "EnqueueFailed", "message": str(exc),
                                        "traceback": None})
            try:
                self.fair.finished(owner, job_id)
            except Exception:  # the lease reaper's repair gives the slot back later
                log.exception("releasing the slot of job %s failed", job_id)
            raise ServiceUnavailable("the job queue is unreachable; the job was not started",
                                     job_id=job_id) from exc
