"""Pipelines: each with its latest graph and a form to start a run; a run drawn as a graph of
step states that refreshes until it ends; the newest runs with their progress.
"""

from __future__ import annotations

import json
from typing import Any

from flask import redirect, render_template, request, url_for

from algohost.api import pipelines as pipelines_api
from algohost.api.artifacts import configured
from algohost.api.context import services
from algohost.api.routing import validate
from algohost.api.schemas import JobView
from algohost.console.blueprint import bp
from algohost.console.calls import answer
from algohost.console.drawing import Node, step_graph
from algohost.console.session import current_session
from algohost.errors import InvalidRequest
from algohost.public import PipelineRun, PipelineRunList, PipelineVersion


@bp.route("/pipelines")
def pipelines() -> Any:
    owner = current_session().owner
    store = configured(services().pipelines)
    found = []
    for name in store.names(owner):
        version = answer(pipelines_api.get_pipeline, PipelineVersion, owner=owner, name=name)
        nodes = [Node(step, version.needs.get(step, []), "pending") for step in version.order]
        found.append((version, step_graph(nodes, title=f"{owner}/{name}")))
    runs = answer(pipelines_api.list_runs, PipelineRunList,
                  query=pipelines_api.RunListQuery(limit=50)).runs
    return render_template("pipelines.html", pipelines=found, runs=runs, owner=owner)


@bp.route("/pipelines/<owner>/<name>/runs", methods=["POST"])
def start_pipeline_run(owner: str, name: str) -> Any:
    try:
        data = json.loads(request.form.get("input", "null") or "null")
    except ValueError as exc:
        raise InvalidRequest(f"the input is not JSON: {exc}") from exc
    body = validate(pipelines_api.RunCreate, {"input": data,
                                              "cache": request.form.get("cache") == "on"},
                    "form")
    run = answer(pipelines_api.start_run, PipelineRun, owner=owner, name=name, body=body)
    return redirect(url_for("console.pipeline_run", run_id=run.id), 303)


def _run(run_id: str) -> PipelineRun:
    return answer(pipelines_api.get_run, PipelineRun, run_id=run_id,
                  query=JobView(include="input"))


@bp.route("/pipeline-runs/<run_id>")
def pipeline_run(run_id: str) -> Any:
    run = _run(run_id)
    nodes = [Node(step.name, step.needs, step.status.value,
                  note="(cached)" if step.cached else
                  (f"{step.duration_ms:.0f} ms" if step.duration_ms is not None else ""),
                  href=url_for("console.job", job_id=step.job_id) if step.job_id else "")
             for step in run.steps]
    return render_template("pipeline_run.html", run=run,
                           graph=step_graph(nodes, title=f"run {run.id} of {run.pipeline}"),
                           owner=current_session().owner)


@bp.route("/pipeline-runs/<run_id>/status.json")
def pipeline_run_status(run_id: str) -> dict[str, Any]:
    run = _run(run_id)
    return {"id": run.id, "status": run.status.value, "terminal": run.status.terminal}
