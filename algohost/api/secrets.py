"""Secrets of an algorithm: set, list, delete; owner only. Values go in, never come out.

A value is never logged, echoed in an error, or stored outside the secret store;
a listing shows names, versions and times only.
"""

from __future__ import annotations

import json
import logging

from flask import Blueprint, request
from pydantic import BaseModel, Field

from algohost.api.access import owned_algorithm
from algohost.api.context import services
from algohost.api.routing import Reply, Upload, route
from algohost.errors import (
    AlgohostError,
    AlgorithmNotFound,
    InvalidRequest,
    MalformedJSON,
    PayloadTooLarge,
    SecretNotFound,
    SecretsUnavailable,
)
from algohost.names import validate_secret_name
from algohost.secrets.base import SecretStore
from algohost.secrets.layout import algorithm_prefix

log = logging.getLogger(__name__)
bp = Blueprint("secrets", __name__)

VALUE = Upload(("application/json", "text/plain"),
               'The value: JSON {"value": "..."} or the raw text (UTF-8, taken as is)')
# A JSON body may escape every character of the value (\uXXXX): allow for that before
# the exact check on the decoded value.
JSON_OVERHEAD = 6


class SecretInfo(BaseModel):
    name: str = Field(examples=["DB_PASSWORD"])
    version: int = Field(description="Starts at 1; every set adds one")
    created_at: str
    updated_at: str


class SecretList(BaseModel):
    secrets: list[SecretInfo] = Field(description="Sorted by name; values are never shown")


class SecretDeleted(BaseModel):
    name: str
    deleted: bool


def _store() -> SecretStore:
    store = services().secrets
    if store is None:
        raise SecretsUnavailable("no secret store is configured")
    return store


def _algorithm(owner: str, name: str) -> None:
    """Owner first (to others a private algorithm is as missing as an unknown one: 404),
    then that it exists (404)."""
    owned_algorithm(owner, name)
    algorithm_prefix(owner, name)
    if not services().registry.exists(owner, name):
        raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")


def _value(body: bytes) -> str:
    limit = services().settings.secret_max_bytes
    if len(body) > limit * JSON_OVERHEAD + 1024:
        raise PayloadTooLarge(f"a secret value is at most {limit} bytes", limit=limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("the value must be UTF-8 text") from exc
    if request.mimetype == "application/json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            # The decoder's message gives a position only, never the text.
            raise MalformedJSON(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or set(data) != {"value"} \
                or not isinstance(data["value"], str):
            raise InvalidRequest('the JSON body must be {"value": "<string>"}')
        text = data["value"]
    if not text:
        raise InvalidRequest("a secret value may not be empty")
    if len(text.encode("utf-8")) > limit:
        raise PayloadTooLarge(f"a secret value is at most {limit} bytes", limit=limit)
    return text


@route(bp, "PUT", "/v1/algorithms/<owner>/<name>/secrets/<secret>",
       summary="Set a secret (a new version); the value is never returned", body=VALUE,
       responses={201: SecretInfo, 200: SecretInfo}, errors=(403, 404, 503))
def put_secret(owner: str, name: str, secret: str, body: bytes) -> Reply:
    _algorithm(owner, name)
    validate_secret_name(secret)
    meta = _store().put(owner, name, secret, _value(body))
    return Reply(SecretInfo.model_validate(meta), 201 if meta["version"] == 1 else 200)


@route(bp, "GET", "/v1/algorithms/<owner>/<name>/secrets",
       summary="List an algorithm's secrets: names, versions and times, never values",
       responses={200: SecretList}, errors=(403, 404, 503))
def list_secrets(owner: str, name: str) -> Reply:
    _algorithm(owner, name)
    metas = _store().list(owner, name)
    return Reply(SecretList(secrets=[SecretInfo.model_validate(m) for m in metas]))


@route(bp, "DELETE", "/v1/algorithms/<owner>/<name>/secrets/<secret>",
       summary="Delete a secret and all its versions", responses={200: SecretDeleted},
       errors=(400, 403, 404, 503))
def delete_secret(owner: str, name: str, secret: str) -> Reply:
    _algorithm(owner, name)
    validate_secret_name(secret)
    if not _store().delete(owner, name, secret):
        raise SecretNotFound(f"secret {secret} of {owner}/{name} is not set", secret=secret)
    return Reply(SecretDeleted(name=secret, deleted=True))


def ensure_policy_quietly(owner: str, name: str) -> None:
    """At publish: create the algorithm's read policy, but never fail the publish for it
    (the first secret set creates it again)."""
    store = services().secrets
    if store is None:
        return
    try:
        store.ensure_policy(owner, name)
    except AlgohostError as exc:
        log.warning("could not write the secrets policy of %s/%s now: %s", owner, name,
                    exc.message)
