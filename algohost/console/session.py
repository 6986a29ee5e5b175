"""Signing in to the console with an API key, and what guards every other page.

The key is checked by the API's own rule (`owner_of_key`) and never stored: a Redis record
keeps the owner and the key's hash under a random id, the cookie holds only that id
(HttpOnly, SameSite=Strict). Every request that changes something carries the session's CSRF token.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Response, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from algohost.api.auth import act_as, owner_of_key
from algohost.api.context import services
from algohost.console.blueprint import bp
from algohost.errors import CsrfRefused, ServiceUnavailable, Unauthorized
from algohost.store.keys import hash_key
from algohost.store.sessions import ConsoleSession, SessionStore

COOKIE = "algohost_console"
SIGNIN_COOKIE = "algohost_console_signin"  # the sign-in form's own CSRF token (double submit)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_ENDPOINTS = frozenset({"console.signin", "console.static"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_store() -> SessionStore:
    store = services().sessions
    if store is None:
        raise ServiceUnavailable("this API serves no console sessions")
    return store


def current_session() -> ConsoleSession:
    found = g.get("console_session")
    if not isinstance(found, ConsoleSession):
        raise RuntimeError("current_session() on a page that is open to anyone")
    return found


def _same(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


def _set_cookie(response: BaseResponse, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/console", httponly=True,
                        samesite="Strict", secure=services().settings.console_secure_cookie)


def _signed_in() -> ConsoleSession | None:
    """The session the cookie names, if its key still belongs to the same owner."""
    store = session_store()
    found = store.get(request.cookies.get(COOKIE, ""))
    if found is None:
        return None
    if services().keys.owner_of_digest(found.key_sha256) != found.owner:
        store.delete(found.id)  # the key was revoked: its sessions end with it
        return None
    return found


@bp.before_request
def _guard() -> Any:
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    found = _signed_in()
    if found is None:
        if request.method == "GET" and not request.path.endswith(".json"):
            return redirect(url_for("console.signin", next=request.full_path.rstrip("?")))
        raise Unauthorized("sign in to the console first")
    if request.method not in SAFE_METHODS:
        given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD)
        if not _same(given, found.csrf_token):
            raise CsrfRefused("the form did not carry this session's CSRF token; reload the "
                              "page and send it again")
    g.console_session = found
    act_as(found.owner)
    return None


@bp.app_template_global()
def csrf_token() -> str:
    found = g.get("console_session")
    return found.csrf_token if isinstance(found, ConsoleSession) else ""


def _safe_next(target: str | None) -> str:
    # Only a path of this console: never another host, never a scheme-relative URL.
    if target and target.startswith("/console/") and not target.startswith("//"):
        return target
    return url_for("console.algorithms")


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> Any:
    error = ""
    status = 200
    if request.method == "POST":
        if not _same(request.form.get(CSRF_FIELD), request.cookies.get(SIGNIN_COOKIE, "")):
            raise CsrfRefused("the sign-in form did not carry its CSRF token; reload it")
        try:
            owner = owner_of_key(request.form.get("key", "").strip())
        except Unauthorized as exc:
            error, status = exc.message, 401
        else:
            started = session_store().create(owner, hash_key(request.form["key"].strip()))
            response = redirect(_safe_next(request.args.get("next")))
            _set_cookie(response, COOKIE, started.id, services().settings.console_session_s)
            response.delete_cookie(SIGNIN_COOKIE, path="/console")
            return response
    token = secrets.token_urlsafe(32)
    response = Response(render_template("signin.html", signin_token=token, error=error,
                                        owner=None), status)
    _set_cookie(response, SIGNIN_COOKIE, token, 3600)
    return response


@bp.route("/signout", methods=["POST"])
def signout() -> Any:
    session_store().delete(current_session().id)
    response = redirect(url_for("console.signin"))
    response.delete_cookie(COOKIE, path="/console")
    return response
