"""Pages to look at: algorithms and their builds (live build logs), jobs (a live list) and
one job with everything it left behind, artifacts shown inline when they are images.
"""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, render_template, request, url_for

from algohost.api import algorithms as algorithms_api
from algohost.api import artifacts as artifacts_api
from algohost.api import buildlogs as buildlogs_api
from algohost.api import jobs as jobs_api
from algohost.api import models as models_api
from algohost.api import webhooks as webhooks_api
from algohost.api.catalogue import AlgorithmQuery, VisibilityChange, catalogue_entry
from algohost.api.context import services
from algohost.api.routing import validate
from algohost.api.schemas import (
    AlgorithmList,
    AlgorithmSummary,
    Build,
    BuildList,
    JobList,
    JobListQuery,
    JobView,
    ModelList,
)
from algohost.console.blueprint import bp
from algohost.console.calls import answer, stream
from algohost.console.session import current_session
from algohost.errors import NotFound
from algohost.public import Delivery, DeliveryList, Job, public_job
from algohost.store.jobs import JobStatus

# Shown inline on the console's origin; anything else (SVG and HTML too) is a download.
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
JOBS_SCANNED = 200  # the newest jobs the list page filters


@bp.route("/")
def home() -> Any:
    return redirect(url_for("console.algorithms"))


@bp.route("/algorithms")
def algorithms() -> str:
    search = request.args.get("q", "").strip() or None
    query = validate(AlgorithmQuery, {"q": search} if search else {}, "query")
    own = answer(algorithms_api.list_algorithms, AlgorithmList, query=query).algorithms
    public = answer(algorithms_api.list_algorithms, AlgorithmList,
                    query=query.model_copy(update={"visibility": "public"})).algorithms
    owner = current_session().owner
    return render_template("algorithms.html", algorithms=own, q=search or "",
                           public=[a for a in public if a.owner != owner], owner=owner)


@bp.route("/algorithms/<owner>/<name>")
def algorithm(owner: str, name: str) -> str:
    versions = answer(algorithms_api.list_versions, BuildList, owner=owner, name=name).versions
    latest = next((b for b in versions if b.status == "succeeded"), None)
    entry = catalogue_entry(services().registry, owner, name)  # readable: checked just above
    return render_template("algorithm.html", algo_owner=owner, name=name, versions=versions,
                           latest=latest, entry=entry, mine=owner == current_session().owner,
                           owner=current_session().owner)


@bp.route("/algorithms/<owner>/<name>/visibility", methods=["POST"])
def visibility(owner: str, name: str) -> Any:
    body = validate(VisibilityChange, {"visibility": request.form.get("visibility", "")},
                    "form")
    answer(algorithms_api.set_visibility, AlgorithmSummary, owner=owner, name=name, body=body)
    return redirect(url_for("console.algorithm", owner=owner, name=name), 303)


# What a version's buttons do: the API's own views, as the owner.
VERSION_ACTIONS = {"yank": algorithms_api.yank_version, "unyank": algorithms_api.unyank_version,
                   "delete": algorithms_api.delete_version}


@bp.route("/algorithms/<owner>/<name>/versions/<version>/<action>", methods=["POST"])
def version_action(owner: str, name: str, version: str, action: str) -> Any:
    view = VERSION_ACTIONS.get(action)
    if view is None:
        raise NotFound(f"no action {action[:40]!r} on a version")
    answer(view, Build, owner=owner, name=name, version=version)
    return redirect(url_for("console.algorithm", owner=owner, name=name), 303)


@bp.route("/jobs/<job_id>/redeliver", methods=["POST"])
def redeliver(job_id: str) -> Any:
    answer(webhooks_api.redeliver_job, Delivery, job_id=job_id,
           query=webhooks_api.RedeliverQuery())
    return redirect(url_for("console.job", job_id=job_id), 303)


def _build(owner: str, name: str, version: str) -> Build:
    return answer(algorithms_api.get_version, Build, owner=owner, name=name, version=version)


@bp.route("/algorithms/<owner>/<name>/versions/<version>")
def build(owner: str, name: str, version: str) -> str:
    found = _build(owner, name, version)
    return render_template("build.html", build=found, owner=current_session().owner,
                           live=found.status not in buildlogs_api.TERMINAL)


@bp.route("/algorithms/<owner>/<name>/versions/<version>/log.json")
def build_log(owner: str, name: str, version: str) -> dict[str, Any]:
    found = _build(owner, name, version)
    return {"version": found.version, "ref": found.ref, "status": found.status.value,
            "error": found.error, "reason": found.reason, "logs": found.logs or ""}


@bp.route("/algorithms/<owner>/<name>/versions/<version>/log.events")
def build_log_events(owner: str, name: str, version: str) -> Response:
    """The API's own server-sent events of the build log, followed until the build ends
    (a reconnecting EventSource resumes after its Last-Event-ID)."""
    reply = stream(buildlogs_api.build_logs, owner=owner, name=name, version=version,
                   query=buildlogs_api.LogsQuery(follow=True))
    return Response(reply.chunks, headers=dict(reply.headers), mimetype=reply.media_type,
                    direct_passthrough=True)


def _row(job: Job) -> dict[str, Any]:
    total = job.metrics.total_ms if job.metrics else None
    return {"id": job.id, "algorithm": job.algorithm, "status": job.status.value,
            "created_at": job.created_at, "total_ms": total,
            "url": url_for("console.job", job_id=job.id)}


def _filtered_jobs() -> tuple[list[Job], str | None]:
    """A page of the owner's jobs (the newest, or from ?cursor=), filtered; and the cursor of
    the next, older page."""
    status, algorithm = request.args.get("status", ""), request.args.get("algorithm", "")
    cursor = request.args.get("cursor") or None
    listing = answer(jobs_api.list_jobs, JobList,
                     query=validate(JobListQuery, {"limit": JOBS_SCANNED, "cursor": cursor},
                                    "query"))
    return [job for job in listing.jobs
            if (not status or job.status.value == status)
            and (not algorithm or algorithm in job.algorithm)], listing.next_cursor


@bp.route("/jobs")
def jobs() -> str:
    found, older = _filtered_jobs()
    status, algorithm = request.args.get("status", ""), request.args.get("algorithm", "")
    return render_template("jobs.html", jobs=[_row(j) for j in found],
                           statuses=[s.value for s in JobStatus], status=status,
                           algorithm=algorithm, live="cursor" not in request.args,
                           older=url_for("console.jobs", status=status, algorithm=algorithm,
                                         cursor=older) if older else "",
                           jobs_scanned=JOBS_SCANNED, owner=current_session().owner)


@bp.route("/jobs.json")
def jobs_json() -> dict[str, Any]:
    return {"jobs": [_row(j) for j in _filtered_jobs()[0]]}


@bp.route("/jobs/<job_id>")
def job(job_id: str) -> str:
    record = jobs_api.owned_job(job_id)
    found = public_job(record, include_input=True)
    deliveries = answer(webhooks_api.job_deliveries, DeliveryList, job_id=job_id).deliveries
    return render_template("job.html", job=found, deliveries=deliveries,
                           parent=_parent(record.parent),
                           inline_images=INLINE_IMAGES, owner=current_session().owner)


def _parent(parent: str | None) -> tuple[str, str] | None:
    """What submitted a job besides a caller, as (words, link): a pipeline run's step..."""
    if not parent:
        return None
    kind, _, rest = parent.partition(":")
    if kind == "pipeline" and ":" in rest:
        run_id, _, step = rest.partition(":")
        return (f"step {step} of pipeline run {run_id}",
                url_for("console.pipeline_run", run_id=run_id))
    if kind == "sweep" and rest:
        sweep_id = rest.split(":", 1)[0]
        return f"a trial of sweep {sweep_id}", url_for("console.sweep", sweep_id=sweep_id)
    return parent, ""


@bp.route("/jobs/<job_id>/status.json")
def job_status(job_id: str) -> dict[str, Any]:
    found = public_job(jobs_api.owned_job(job_id))
    return {"id": found.id, "status": found.status.value, "terminal": found.status.terminal}


@bp.route("/jobs/<job_id>/cancel", methods=["POST"])
def cancel_job(job_id: str) -> Any:
    answer(jobs_api.cancel_job, Job, job_id=job_id, query=JobView())
    return redirect(url_for("console.job", job_id=job_id), 303)


@bp.route("/models")
def models() -> str:
    listing = answer(models_api.list_models, ModelList)
    return render_template("models.html", models=listing.models, owner=current_session().owner)


@bp.route("/artifacts/<sha256>")
def artifact(sha256: str) -> Response:
    reply = stream(artifacts_api.download_artifact, sha256=sha256)
    headers = dict(reply.headers)
    if reply.media_type in INLINE_IMAGES and "download" not in request.args:
        headers["Content-Disposition"] = "inline"
    return Response(reply.chunks, headers=headers, mimetype=reply.media_type,
                    direct_passthrough=True)
