"""Jobs: submit a call, read it, list them, cancel it; the API writes the record, sends its id.

A caller sees only its own jobs; a sync caller waits on the record (`Prefer: wait=N`),
never on Celery; a job that cannot be enqueued is failed, never left queued forever.
"""

from __future__ import annotations

import logging

from flask import Blueprint, request

from algohost.api.access import readable_algorithm
from algohost.api.auth import current_owner, require_owner
from algohost.api.context import services
from algohost.api.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    released_on_failure,
    request_fingerprint,
    requested_key,
    reserve,
)
from algohost.api.prefer import PATTERN as PREFER_PATTERN
from algohost.api.prefer import parse_prefer
from algohost.api.routing import Header, Reply, route
from algohost.api.schemas import (
    Job,
    JobCreate,
    JobList,
    JobListQuery,
    JobView,
    check_max_timeout,
    public_job,
)
from algohost.clock import now_iso
from algohost.errors import (
    JobNotCancelable,
    JobNotFound,
)
from algohost.names import AlgorithmRef
from algohost.store.fairshare import PointerMoved
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.registry import Resolved
from algohost.submission import new_job_id
from algohost.webhooks.urls import refused_literal

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__)

PREFER = Header("Prefer", "`wait=N` waits up to N seconds (at most the server's max_wait_s) "
                          "for the job to finish; `respond-async` answers at once. Other "
                          "preferences are ignored", "wait=10", pattern=PREFER_PATTERN)
CANCELABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


def owned_job(job_id: str) -> JobRecord:
    record = services().jobs.get(job_id)
    if record is None:
        raise JobNotFound(f"job {job_id} does not exist (or has expired)")
    require_owner(record.owner, f"job {job_id}")
    return record


@route(bp, "POST", "/v1/jobs", summary="Submit a call of an algorithm", body=JobCreate,
       query=JobView, headers=(PREFER, IDEMPOTENCY_HEADER), responses={202: Job, 200: Job},
       response_headers={"Location": "The job's URL",
                         "Retry-After": "Seconds to wait before polling, when still running",
                         "Preference-Applied": "The wait that was honoured",
                         **REPLAYED_HEADER},
       errors=(402, 403, 404, 409, 422, 429, 503))
def create_job(body: JobCreate, query: JobView) -> Reply:
    svc = services()
    wait_s = parse_prefer(request.headers.getlist("Prefer"), svc.settings.max_wait_s)
    key = requested_key()
    check_max_timeout(body.timeout_s, svc.settings.max_timeout_s, "request body")
    ref = AlgorithmRef.parse(body.algorithm, ranges=True)
    readable_algorithm(ref.owner, ref.name)
    if body.webhook is not None:
        refused_literal(body.webhook, svc.settings.webhook_allow_private)
    resolved = svc.registry.resolve_for_call(ref.owner, ref.name, ref.version)
    job_id = new_job_id()
    earlier = None if key is None else reserve(
        svc.job_keys, key, request_fingerprint(body), job_id)
    replayed = svc.jobs.get(earlier) if earlier is not None else None
    if replayed is not None:
        job = replayed
        headers = {"Location": f"/v1/jobs/{job.id}", "Idempotent-Replayed": "true"}
    else:
        with released_on_failure(svc.job_keys, key, job_id):
            try:
                job = submit(body, resolved, job_id)
            except PointerMoved:  # a version published or deleted since it was cached
                job = submit(body, svc.registry.resolve_for_call(
                    ref.owner, ref.name, ref.version, fresh=True), job_id)
        headers = {"Location": f"/v1/jobs/{job.id}"}
    status = 200 if replayed is not None and job.status.terminal else 202
    if wait_s > 0:
        if not job.status.terminal:
            job = svc.jobs.wait_terminal(job.id, wait_s) or job
        headers["Preference-Applied"] = f"wait={wait_s}"
        if job.status.terminal:
            status = 200
        else:
            headers["Retry-After"] = "1"
    return Reply(public_job(job, query.include == "input"), status, headers)


def submit(body: JobCreate, resolved: Resolved, job_id: str) -> JobRecord:
    return services().submitter.submit(
        current_owner(), body.algorithm, resolved.build, body.input, timeout_s=body.timeout_s,
        webhook=body.webhook, webhook_events=body.webhook_events, job_id=job_id,
        pointer=resolved.pointer)


@route(bp, "GET", "/v1/jobs", summary="List your jobs, newest first", query=JobListQuery,
       responses={200: JobList})
def list_jobs(query: JobListQuery) -> Reply:
    svc = services()
    records, following = svc.jobs.page_for_owner(current_owner(), query.limit,
                                                 int(query.cursor or 0),
                                                 svc.settings.max_page_bytes)
    include = query.include == "input"
    return Reply(JobList(jobs=[public_job(record, include) for record in records],
                         next_cursor=None if following is None else str(following)))


@route(bp, "GET", "/v1/jobs/<job_id>", summary="Read a job", query=JobView, headers=(PREFER,),
       responses={200: Job}, errors=(403, 404),
       response_headers={"Preference-Applied": "The wait that was honoured"})
def get_job(job_id: str, query: JobView) -> Reply:
    svc = services()
    wait_s = parse_prefer(request.headers.getlist("Prefer"), svc.settings.max_wait_s)
    job = owned_job(job_id)
    headers = {}
    if wait_s > 0:
        # A caller whose submit wait ran out keeps waiting here, holding no thread.
        headers["Preference-Applied"] = f"wait={wait_s}"
        if not job.status.terminal:
            job = svc.jobs.wait_terminal(job_id, wait_s) or job
    return Reply(public_job(job, query.include == "input"), 200, headers)


MAX_CANCELED_DESCENDANTS = 10_000


def cancel_descendants(record: JobRecord) -> None:
    """Cancel the calls a canceled job's algorithm made, and theirs. The worker running a
    child inline sees its parent's cancel too; this also reaches a child that a lost
    worker's reaper sent back to the queue."""
    jobs, pending, seen = services().jobs, list(record.children), 0
    while pending and seen < MAX_CANCELED_DESCENDANTS:
        child_id, seen = pending.pop(), seen + 1
        jobs.transition(child_id, JobStatus.CANCELED, CANCELABLE, finished_at=now_iso(),
                        reason="parent_canceled")
        child = jobs.get(child_id)
        pending += child.children if child is not None else []


@route(bp, "POST", "/v1/jobs/<job_id>/cancel", summary="Cancel a queued or running job",
       query=JobView, responses={200: Job}, errors=(403, 404, 409))
def cancel_job(job_id: str, query: JobView) -> Reply:
    svc = services()
    record = owned_job(job_id)
    # The worker polls the status while the call runs and kills the container.
    canceled = svc.jobs.transition(job_id, JobStatus.CANCELED, CANCELABLE,
                                   finished_at=now_iso(), reason="canceled")
    if not canceled:
        status = (svc.jobs.get(job_id) or record).status
        raise JobNotCancelable(f"job {job_id} is already {status}", status=status.value)
    record = svc.jobs.get(job_id) or record
    cancel_descendants(record)
    try:
        svc.fair.finished(record.owner, job_id)
    except Exception:  # the lease reaper's repair gives the slot back later
        log.exception("releasing the slot of job %s failed", job_id)
    try:
        # Sent from here, where the cancel happens; the worker's own `completed` is deduplicated.
        svc.notifier.job(record, "completed")
    except Exception:  # the cancel stands even if its webhook cannot be queued now
        log.exception("queueing the completed webhook of job %s failed", job_id)
    return Reply(public_job(record, query.include == "input"))
