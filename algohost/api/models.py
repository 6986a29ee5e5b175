"""Models: record a pushed blob as a version of a named model, and list them.

The bytes travel through /v1/artifacts (streamed, deduplicated); this only names them,
and only blobs the owner holds can become its models.
"""

from __future__ import annotations

from flask import Blueprint

from algohost.api.artifacts import artifact_store, configured
from algohost.api.auth import current_owner, require_owner
from algohost.api.context import services
from algohost.api.routing import Reply, route
from algohost.api.schemas import (
    Model,
    ModelList,
    ModelPush,
    ModelVersionView,
    public_model_version,
)
from algohost.artifacts.models import ModelNotFound, ModelRegistry, ModelVersion
from algohost.clock import now_iso
from algohost.names import MODEL_NAME

bp = Blueprint("models", __name__)


def model_registry() -> ModelRegistry:
    return configured(services().models)


def _check_name(name: str) -> None:
    MODEL_NAME.check(name, name=name[:80])


@route(bp, "POST", "/v1/models/<owner>/<name>",
       summary="Make an uploaded artifact the latest version of a model", body=ModelPush,
       responses={201: ModelVersionView, 200: ModelVersionView}, errors=(403, 404, 503))
def push_model(owner: str, name: str, body: ModelPush) -> Reply:
    require_owner(owner, f"model {owner}/{name}")
    _check_name(name)
    record = artifact_store().get(owner, body.sha256)
    version = ModelVersion(name=name, sha256=record.sha256, kind=body.kind,
                           filename=body.filename, size=record.size, pushed_at=now_iso())
    created = model_registry().push(owner, version)
    artifact_store().reference(owner, record.sha256, f"model:{version.ref}")
    stored = model_registry().get(owner, name, record.sha256) or version
    return Reply(public_model_version(owner, stored), 201 if created else 200)


@route(bp, "GET", "/v1/models", summary="Your models, each with its latest version",
       responses={200: ModelList})
def list_models() -> Reply:
    owner, registry = current_owner(), model_registry()
    models = []
    for name in registry.names(owner):
        versions = registry.versions(owner, name)
        latest = registry.latest(owner, name)
        models.append(Model(name=name, latest=public_model_version(owner, latest)
                            if latest else None,
                            versions=[public_model_version(owner, v) for v in versions]))
    return Reply(ModelList(models=models))


@route(bp, "GET", "/v1/models/<owner>/<name>", summary="One model and its versions",
       responses={200: Model}, errors=(403, 404))
def get_model(owner: str, name: str) -> Reply:
    require_owner(owner, f"model {owner}/{name}")
    registry = model_registry()
    latest = registry.latest(owner, name)
    if latest is None:
        raise ModelNotFound(f"no model {name} of {owner}")
    return Reply(Model(name=name, latest=public_model_version(owner, latest),
                       versions=[public_model_version(owner, v)
                                 for v in registry.versions(owner, name)]))
