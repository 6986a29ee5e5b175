"""The one route table: each `@route` registers a Flask view AND describes it for OpenAPI.

It also does what every route shares: authenticate, parse query and body, and render
the reply; a view may only answer with a status and model its route declares.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from flask import Blueprint, Response, request
from pydantic import BaseModel, ValidationError

from algohost.api.auth import authenticate
from algohost.api.context import services
from algohost.errors import (
    InvalidRequest,
    MalformedJSON,
    PayloadTooLarge,
    UnsupportedMediaType,
)


@dataclass(frozen=True)
class Upload:
    """A raw request body of one of these media types; the view parses it.

    `schemas` documents the media types whose content a model describes. A `streamed`
    upload reaches the view as a stream it reads in chunks (up to the owner's quota),
    never whole; `*/*` accepts any media type (the content's own)."""

    media_types: tuple[str, ...]
    description: str
    schemas: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    streamed: bool = False
    required: bool = True  # False: an empty body is a valid one


@dataclass(frozen=True)
class Header:
    name: str
    description: str
    example: str = ""
    pattern: str = ""  # the syntax the view accepts, so the document can say it


@dataclass(frozen=True)
class RouteSpec:
    method: str
    rule: str
    name: str
    tag: str
    summary: str
    responses: Mapping[int, type[BaseModel]]
    body: type[BaseModel] | Upload | None = None
    query: type[BaseModel] | None = None
    headers: tuple[Header, ...] = ()
    response_headers: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    auth: bool = True
    path: Mapping[str, str] = field(default_factory=dict)  # parameter -> the pattern it takes


@dataclass(frozen=True)
class Reply:
    model: BaseModel
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Streamed:
    """A binary reply sent in chunks as they are read, never held whole."""

    chunks: Iterator[bytes]
    media_type: str
    headers: Mapping[str, str] = field(default_factory=dict)


class BinaryContent(BaseModel):
    """Marks a route whose success reply is raw bytes (a `Streamed`), not JSON."""


class EventStream(BaseModel):
    """Marks a route whose success reply is server-sent events (a `Streamed`), not JSON."""


STREAMED_REPLIES = (BinaryContent, EventStream)


View = Callable[..., Reply | Streamed]
M = TypeVar("M", bound=BaseModel)
ROUTES: list[RouteSpec] = []


def route(bp: Blueprint, method: str, rule: str, *, summary: str,
          responses: Mapping[int, type[BaseModel]], body: type[BaseModel] | Upload | None = None,
          query: type[BaseModel] | None = None, headers: tuple[Header, ...] = (),
          response_headers: Mapping[str, str] | None = None, errors: tuple[int, ...] = (),
          auth: bool = True, path: Mapping[str, str] | None = None) -> Callable[[View], View]:
    def register(view: View) -> View:
        spec = RouteSpec(method=method, rule=rule, name=view.__name__, tag=bp.name,
                         summary=summary, responses=dict(responses), body=body, query=query,
                         headers=headers, response_headers=dict(response_headers or {}),
                         errors=errors, auth=auth, path=dict(path or {}))
        ROUTES.append(spec)

        @functools.wraps(view)
        def handle(**path: str) -> Response:
            return _render(spec, view(**_arguments(spec, path)))

        bp.add_url_rule(rule, view.__name__, handle, methods=[method])
        return view

    return register


def _arguments(spec: RouteSpec, path: dict[str, str]) -> dict[str, Any]:
    if spec.auth:
        authenticate()
    arguments: dict[str, Any] = dict(path)
    if spec.query is not None:
        arguments["query"] = validate(spec.query, request.args.to_dict(), "query parameters")
    if isinstance(spec.body, Upload) and spec.body.streamed:
        arguments["body"] = open_upload(spec.body)
    elif isinstance(spec.body, Upload):
        arguments["body"] = read_upload(spec.body)
    elif spec.body is not None:
        arguments["body"] = validate(spec.body, read_json(), "request body")
    return arguments


def _render(spec: RouteSpec, reply: Reply | Streamed) -> Response:
    if isinstance(reply, Streamed):
        if not set(STREAMED_REPLIES) & set(spec.responses.values()):
            raise RuntimeError(f"{spec.method} {spec.rule} streamed bytes it does not declare")
        return Response(reply.chunks, status=200, headers=dict(reply.headers),
                        mimetype=reply.media_type, direct_passthrough=True)
    declared = spec.responses.get(reply.status)
    if declared is None or type(reply.model) is not declared:
        raise RuntimeError(f"{spec.method} {spec.rule} answered {reply.status} with "
                           f"{type(reply.model).__name__}, which its route does not declare")
    # exclude_unset drops optional parts the view chose not to show (a job's input).
    body = reply.model.model_dump_json(exclude_unset=True)
    return Response(body, status=reply.status, headers=dict(reply.headers),
                    mimetype="application/json")


def _check_length(limit: int) -> None:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes", limit=limit)


def read_json() -> Any:
    """The decoded JSON body, within Settings.max_input_bytes."""
    limit = services().settings.max_input_bytes
    _check_length(limit)
    if not request.is_json:
        raise MalformedJSON("the body must be JSON, sent with 'Content-Type: application/json'")
    data = request.get_data(cache=False)
    if len(data) > limit:  # chunked bodies carry no Content-Length to check first
        raise PayloadTooLarge(f"the body is larger than {limit} bytes", limit=limit)
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise MalformedJSON("the JSON body is nested too deeply") from exc
    except ValueError as exc:
        raise MalformedJSON(f"the body is not valid JSON: {exc}") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _check_media_type(upload: Upload) -> None:
    if "*/*" in upload.media_types:
        return
    if request.mimetype not in upload.media_types:
        raise UnsupportedMediaType(
            f"send the body as one of {', '.join(upload.media_types)}",
            accepted=list(upload.media_types))


def open_upload(upload: Upload) -> IO[bytes]:
    """The body as a stream; the view caps what it reads (an owner's quota, say)."""
    _check_media_type(upload)
    # None would fall back to the app's cap for whole bodies; a streamed body is capped by
    # the owner's quota instead, which the store enforces again while it reads.
    request.max_content_length = services().settings.artifact_quota_bytes
    return request.stream


def read_upload(upload: Upload) -> bytes:
    """A raw body of an accepted media type, within Settings.max_upload_bytes."""
    _check_media_type(upload)
    limit = services().settings.max_upload_bytes
    _check_length(limit)
    data = request.get_data(cache=False)
    if len(data) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes", limit=limit)
    return data


_MESSAGES = {
    "missing": "this field is required",
    "extra_forbidden": "unknown field",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as field + message, without its internals (input, ctx, urls)."""
    return [{"field": ".".join(str(part) for part in error["loc"]) or "body",
             "message": _MESSAGES.get(error["type"], error["msg"])}
            for error in exc.errors(include_url=False, include_input=False,
                                    include_context=False)]


def validate(model: type[M], data: Any, where: str) -> M:
    """`data` as `model`, or a 400 invalid_request naming each bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = field_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidRequest(f"invalid {where}: {summary}", errors=errors) from exc
