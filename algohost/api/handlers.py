"""Every error the API returns, as JSON `{"error": {"code", "message", "details"?}}`.

One handler renders AlgohostError by its class's status and code, Werkzeug's errors take
the same shape, anything else is a logged 500 whose traceback never reaches the body.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from algohost import errors

log = logging.getLogger(__name__)


def _json_error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None
                ) -> Response:
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def render_error(exc: errors.AlgohostError) -> Response:
    if exc.http_status >= 500:
        log.error("%s %s failed: %s", request.method, request.path, exc.message,
                  exc_info=exc if exc.http_status == 500 else None)
    headers = {}
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="algohost"'
    if isinstance(exc, errors.RateLimited | errors.IdempotencyKeyInUse):
        headers["Retry-After"] = str(exc.details.get("retry_after_s", 1))
    return _json_error(exc.http_status, exc.to_dict(), headers)


def render_http_error(exc: HTTPException) -> Response:
    if isinstance(exc, RequestEntityTooLarge):
        return render_error(errors.PayloadTooLarge("the body is larger than the server accepts"))
    if isinstance(exc, WerkzeugNotFound):
        return render_error(errors.NotFound(f"no route {request.method} {request.path}"))
    if isinstance(exc, WerkzeugMethodNotAllowed):
        allowed = sorted(exc.valid_methods or [])
        response = render_error(errors.MethodNotAllowed(
            f"{request.method} is not allowed on {request.path}", allowed=allowed))
        response.headers["Allow"] = ", ".join(allowed)
        return response
    status = exc.code or 500
    name = exc.name if exc.code else "Internal Server Error"
    code = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    return _json_error(status, {"code": code, "message": exc.description or name})


def render_unexpected(exc: Exception) -> Response:
    log.error("%s %s failed with an unexpected error", request.method, request.path,
              exc_info=exc)
    hidden = errors.AlgohostError("an unexpected error happened; it has been logged")
    return _json_error(hidden.http_status, hidden.to_dict())


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(errors.AlgohostError, render_error)
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(Exception, render_unexpected)
