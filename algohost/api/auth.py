"""Who is calling: `Authorization: Bearer KEY` resolved to an owner through the KeyStore.

Keys are compared only as hashes inside the KeyStore; a key never reaches a log
or a response. 401 when the caller is unknown, 403 when a resource is another's.
"""

from __future__ import annotations

from flask import g, request

from algohost.api.context import services
from algohost.errors import Forbidden, Unauthorized


def authenticate() -> str:
    """Resolve the request's API key to its owner and remember it for the request."""
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("send an API key as 'Authorization: Bearer <key>'")
    return act_as(owner_of_key(key))


def owner_of_key(key: str) -> str:
    """The owner of a presented key (the header's, or the console's sign-in form's)."""
    owner = services().keys.owner_of(key)
    if owner is None:
        raise Unauthorized("the API key is not valid")
    return owner


def act_as(owner: str) -> str:
    """Make `owner` the caller of this request: every view's owner check compares with it."""
    g.algohost_owner = owner
    return owner


def current_owner() -> str:
    owner = g.get("algohost_owner")
    if not isinstance(owner, str):
        raise RuntimeError("current_owner() on a route that does not authenticate")
    return owner


def require_owner(owner: str, what: str) -> None:
    if owner != current_owner():
        raise Forbidden(f"{what} belongs to another owner")
