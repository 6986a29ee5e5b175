"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Nothing here is written by hand per endpoint: a route that exists is documented,
and a documented schema is the model that validates or renders the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from algohost.api.routing import STREAMED_REPLIES, BinaryContent, EventStream, RouteSpec, Upload
from algohost.api.schemas import ErrorBody

REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearerAuth"
_PATH_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
Mode = Literal["validation", "serialization"]


def openapi_path(rule: str) -> str:
    """Flask's `/v1/jobs/<job_id>` as OpenAPI's `/v1/jobs/{job_id}`."""
    return _PATH_PARAM.sub(r"{\1}", rule)


def _models(routes: Iterable[RouteSpec]) -> list[tuple[type[BaseModel], Mode]]:
    wanted: dict[tuple[type[BaseModel], Mode], None] = {(ErrorBody, "serialization"): None}
    for spec in routes:
        if isinstance(spec.body, type):
            wanted[(spec.body, "validation")] = None
        if isinstance(spec.body, Upload):
            wanted.update({(model, "validation"): None for model in spec.body.schemas.values()})
        if spec.query is not None:
            wanted[(spec.query, "validation")] = None
        for model in spec.responses.values():
            if model not in STREAMED_REPLIES:
                wanted[(model, "serialization")] = None
    return list(wanted)


def _parameters(spec: RouteSpec, schemas: dict[str, Any], refs: dict[Any, Any]
                ) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True,
         "schema": {"type": "string", **({"pattern": spec.path[name]} if name in spec.path
                                         else {})}}
        for name in _PATH_PARAM.findall(spec.rule)]
    if spec.query is not None:
        query = schemas[refs[(spec.query, "validation")]["$ref"].rsplit("/", 1)[-1]]
        required = set(query.get("required", []))
        for name, schema in query.get("properties", {}).items():
            parameter = {"name": name, "in": "query", "required": name in required,
                         "schema": {k: v for k, v in schema.items() if k != "description"}}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    for header in spec.headers:
        schema = {"type": "string", **({"pattern": header.pattern} if header.pattern else {})}
        parameter = {"name": header.name, "in": "header", "required": False,
                     "description": header.description, "schema": schema}
        if header.example:
            parameter["example"] = header.example
        parameters.append(parameter)
    return parameters


def _upload_content(media: str, models: Mapping[str, type[BaseModel]],
                    refs: dict[Any, Any]) -> dict[str, Any]:
    if media in models:
        return {"schema": refs[(models[media], "validation")]}
    if "*" in media:
        return {}  # any bytes at all: OpenAPI 3.1 leaves such content without a schema
    return {"schema": {"type": "string", "contentMediaType": media}}


def _request_body(spec: RouteSpec, refs: dict[Any, Any]) -> dict[str, Any] | None:
    if isinstance(spec.body, Upload):
        models = spec.body.schemas
        return {"required": spec.body.required, "description": spec.body.description,
                "content": {media: _upload_content(media, models, refs)
                            for media in spec.body.media_types}}
    if spec.body is not None:
        return {"required": True,
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}}}
    return None


def _error_statuses(spec: RouteSpec) -> list[int]:
    statuses = set(spec.errors) | {500}
    if spec.auth:
        statuses.add(401)
    # A path parameter is checked by the view (a name's grammar) even where the route
    # states no pattern for it.
    if spec.body is not None or spec.query is not None or spec.headers or "<" in spec.rule:
        statuses.add(400)
    if spec.body is not None:
        statuses.add(413)
    if isinstance(spec.body, Upload):
        statuses.add(415)
    return sorted(statuses - set(spec.responses))


def _responses(spec: RouteSpec, refs: dict[Any, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, model in sorted(spec.responses.items()):
        # Raw bytes of whatever media type: no schema, as OpenAPI 3.1 leaves binary content.
        if model is BinaryContent:
            content: dict[str, Any] = {"*/*": {}}
        elif model is EventStream:
            content = {"text/event-stream": {"schema": {"type": "string"}}}
        else:
            content = {"application/json": {"schema": refs[(model, "serialization")]}}
        response: dict[str, Any] = {"description": HTTPStatus(status).phrase,
                                    "content": content}
        if spec.response_headers and status < 300:
            response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                                   for name, text in spec.response_headers.items()}
        responses[str(status)] = response
    error_schema = refs[(ErrorBody, "serialization")]
    for status in _error_statuses(spec):
        responses[str(status)] = {"description": HTTPStatus(status).phrase,
                                  "content": {"application/json": {"schema": error_schema}}}
    # The HTTP server's own answer, before the app sees the request: no JSON body.
    responses["414"] = {"description": "URI Too Long: the request line is longer than the "
                                       "server accepts (gunicorn: 4094 bytes)"}
    return dict(sorted(responses.items()))


def _operation(spec: RouteSpec, schemas: dict[str, Any], refs: dict[Any, Any]
               ) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": spec.name,
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": [{SECURITY_SCHEME: []}] if spec.auth else [],
        "responses": _responses(spec, refs),
    }
    parameters = _parameters(spec, schemas, refs)
    if parameters:
        operation["parameters"] = parameters
    body = _request_body(spec, refs)
    if body is not None:
        operation["requestBody"] = body
    return operation


def _package_version() -> str:
    try:
        return version("algohost")
    except PackageNotFoundError:
        return "0.0.0"


def _cap(schemas: dict[str, Any], requests: Iterable[str], maximums: Mapping[str, int]) -> None:
    """Write this server's configured ceilings (max_timeout_s...) into the integer properties
    of request models that they bound, so the document says what this server accepts."""
    for key in requests:
        for name, prop in schemas[key].get("properties", {}).items():
            if name in maximums:
                for branch in [prop, *prop.get("anyOf", [])]:
                    if branch.get("type") == "integer":
                        branch["maximum"] = maximums[name]


def build_document(routes: list[RouteSpec],
                   maximums: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The whole document for these routes; components hold every model once.

    `maximums` caps integer properties by name, with limits that are settings."""
    refs, definitions = models_json_schema(_models(routes), ref_template=REF_TEMPLATE)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    requests = {refs[(model, mode)]["$ref"].rsplit("/", 1)[-1]
                for model, mode in _models(routes) if mode == "validation"}
    _cap(schemas, requests, maximums or {})
    paths: dict[str, dict[str, Any]] = {}
    for spec in routes:
        paths.setdefault(openapi_path(spec.rule), {})[spec.method.lower()] = \
            _operation(spec, schemas, refs)
    # Query models were unfolded into parameters above; no operation refers to them.
    for spec in routes:
        if spec.query is not None:
            schemas.pop(refs[(spec.query, "validation")]["$ref"].rsplit("/", 1)[-1], None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "algohost", "version": _package_version(),
                 "description": "Publish versioned algorithms and call them; calls run in "
                                "sandboxed containers. Errors share one body: ErrorBody."},
        "tags": [{"name": tag} for tag in dict.fromkeys(spec.tag for spec in routes)],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {SECURITY_SCHEME: {
                "type": "http", "scheme": "bearer",
                "description": "An API key, as 'Authorization: Bearer <key>'"}},
        },
    }
