"""The editor: an algorithm's files in the browser, "build" publishes them as a new version
through the API's publish view, and a try-it panel makes a synchronous call of it.

Text files are edited; other files of the version being edited are carried over as they are.
"""

from __future__ import annotations

import json
from typing import Any

from flask import redirect, render_template, request, url_for

from algohost.api import algorithms as algorithms_api
from algohost.api import jobs as jobs_api
from algohost.api.auth import require_owner
from algohost.api.context import services
from algohost.api.routing import read_json, validate
from algohost.api.schemas import Build, BuildList, BuildReply, JobCreate, JobView, PublishQuery
from algohost.archive import archive_of_files, read_archive
from algohost.cli.scaffold import template_files
from algohost.console.blueprint import bp
from algohost.console.calls import answer, replied
from algohost.console.pages import INLINE_IMAGES
from algohost.console.session import current_session
from algohost.errors import AlgohostError, AlgorithmNotFound, InvalidRequest
from algohost.names import validate_algorithm_name
from algohost.public import Job

NEW_TEMPLATE = "function"


def _source_files(owner: str, name: str, version: str) -> dict[str, bytes]:
    require_owner(owner, f"algorithm {owner}/{name}")  # a public algorithm's source is not
    found = answer(algorithms_api.get_version, Build, owner=owner, name=name, version=version)
    svc = services()
    return read_archive(svc.registry.source(found.id), svc.settings.max_upload_bytes)


def _text_files(files: dict[str, bytes]) -> tuple[dict[str, str], list[str]]:
    texts, others = {}, []
    for path, data in sorted(files.items()):
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            others.append(path)
    return texts, others


@bp.route("/new", methods=["GET", "POST"])
def new_algorithm() -> Any:
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        try:
            validate_algorithm_name(name)
        except AlgohostError as exc:
            return render_template("new.html", error=exc.message, name=name,
                                   owner=current_session().owner), 400
        return redirect(url_for("console.editor", owner=current_session().owner, name=name))
    return render_template("new.html", error="", name="", owner=current_session().owner)


@bp.route("/algorithms/<owner>/<name>/edit")
def editor(owner: str, name: str) -> str:
    # Only into one's own namespace, whatever exists there: the same 403 for any other
    # owner's name, and never the source of another's public algorithm.
    require_owner(owner, f"algorithm {owner}/{name}")
    validate_algorithm_name(name)
    base = request.args.get("version", "")
    try:
        versions = answer(algorithms_api.list_versions, BuildList, owner=owner, name=name).versions
    except AlgorithmNotFound:
        versions = []
    if not base and versions:
        live = [b for b in versions if b.status.value != "deleted"]
        base = (next((b for b in live if b.status.value == "succeeded"), None)
                or (live[0] if live else versions[0])).version
    if base:
        texts, others = _text_files(_source_files(owner, name, base))
    else:
        texts, others = template_files(name, NEW_TEMPLATE), []
    built = next((b for b in versions if b.version == base), None)
    return render_template("editor.html", algo_owner=owner, name=name, base=base,
                           files=texts, carried=others, owner=current_session().owner,
                           example=json.dumps(example_input(built)),
                           inline_images=INLINE_IMAGES)


def example_input(build: Build | None) -> Any:
    """What the try-it panel starts with: a notebook's parameter defaults, else a name."""
    properties = (build.parameters or {}).get("properties", {}) if build else {}
    if properties:
        return {key: prop.get("default") for key, prop in properties.items()}
    return {"name": "world"}


@bp.route("/algorithms/<owner>/<name>/build", methods=["POST"])
def build_from_editor(owner: str, name: str) -> tuple[dict[str, Any], int]:
    body = read_json()
    if not isinstance(body, dict) or not isinstance(body.get("files"), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in body["files"].items()):
        raise InvalidRequest('send {"files": {"path": "text", ...}, "base": "1.0.0"}')
    files = {path: text.encode("utf-8") for path, text in body["files"].items()}
    base = body.get("base")
    if isinstance(base, str) and base:  # what the editor did not show travels unchanged
        _, carried = _text_files(_source_files(owner, name, base))
        kept = _source_files(owner, name, base)
        files.update({path: kept[path] for path in carried if path not in files})
    model, reply = replied(algorithms_api.publish, BuildReply, owner=owner, name=name,
                           body=archive_of_files(files), query=PublishQuery())
    published = model.build
    return {"build": {"version": published.version, "status": published.status.value,
                      "ref": published.ref,
                      "log_url": url_for("console.build_log", owner=owner, name=name,
                                         version=published.version),
                      "events_url": url_for("console.build_log_events", owner=owner,
                                            name=name, version=published.version),
                      "url": url_for("console.build", owner=owner, name=name,
                                     version=published.version)},
            "created": reply.status == 202}, reply.status


@bp.route("/try", methods=["POST"])
def try_it() -> tuple[dict[str, Any], int]:
    """A call with the API's own job body and view; the page sends `Prefer: wait=N`, so the
    view waits for the job as it does for any sync caller (a parked greenlet, no thread)."""
    body = validate(JobCreate, read_json(), "request body")
    job, reply = replied(jobs_api.create_job, Job, body=body, query=JobView(include="input"))
    return {"job": json.loads(job.model_dump_json()),
            "url": url_for("console.job", job_id=job.id)}, reply.status
