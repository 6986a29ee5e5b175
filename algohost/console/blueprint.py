"""The console's blueprint and what every page shares: assets, headers, HTML errors.

Pages are rendered on the server from the API's own reply models; the only scripts are
the bundled static files, so the Content-Security-Policy allows nothing inline.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import secrets
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, render_template, request, url_for

from algohost.errors import AlgohostError

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# Asset URLs carry their content's hash, so browsers may keep them for a long time.
ASSET_MAX_AGE_S = 7 * 24 * 3600
# The editor's library mounts its styles in a <style> element that carries the page's nonce.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'nonce-{nonce}'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")


COMPRESSED = (".js", ".css")


@cache
def _gzipped(name: str) -> bytes:
    # Once per process: the editor's bundle goes from about 470 KiB to about 160 KiB.
    return gzip.compress((STATIC / name).read_bytes(), compresslevel=9, mtime=0)


class ConsoleBlueprint(Blueprint):
    def get_send_file_max_age(self, filename: str | None) -> int | None:
        return ASSET_MAX_AGE_S

    def send_static_file(self, filename: str) -> Response:
        """Scripts and styles gzipped for browsers that take it (gunicorn compresses nothing)."""
        path = (STATIC / filename).resolve()
        if (not filename.endswith(COMPRESSED) or path.parent != STATIC.resolve()
                or not path.is_file() or not request.accept_encodings.quality("gzip")):
            return super().send_static_file(filename)
        mimetype = "text/css" if filename.endswith(".css") else "text/javascript"
        response = Response(_gzipped(filename), mimetype=mimetype)
        response.headers["Content-Encoding"] = "gzip"
        response.headers["Vary"] = "Accept-Encoding"
        response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE_S}"
        response.set_etag(_digest(filename) + "-gz")
        response.make_conditional(request)
        return response


bp = ConsoleBlueprint("console", __name__, url_prefix="/console", template_folder="templates",
                      static_folder="static", static_url_path="/static")


# The top navigation, and the links on an algorithm's page (to its owner).
NAV: list[tuple[str, str]] = [
    ("console.algorithms", "Algorithms"), ("console.jobs", "Jobs"),
    ("console.batches", "Batches"), ("console.pipelines", "Pipelines"),
    ("console.sweeps", "Sweeps"), ("console.models", "Models"),
    ("console.collections", "Data"), ("console.usage", "Usage")]
ALGORITHM_LINKS: list[tuple[str, str]] = [("console.secrets", "Secrets"),
                                          ("console.metrics", "Metrics")]


@bp.context_processor
def _navigation() -> dict[str, Any]:
    return {"console_nav": NAV, "algorithm_links": ALGORITHM_LINKS}


@cache
def _digest(name: str) -> str:
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]


@bp.app_template_global()
def asset(name: str) -> str:
    return url_for("console.static", filename=name, v=_digest(name))


@bp.app_template_global()
def style_nonce() -> str:
    if "console_style_nonce" not in g:
        g.console_style_nonce = secrets.token_urlsafe(16)
    return str(g.console_style_nonce)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP.format(nonce=style_nonce()))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def wants_json() -> bool:
    return request.path.endswith(".json") or request.is_json or \
        request.accept_mimetypes.best == "application/json"


@bp.errorhandler(AlgohostError)
def _error(exc: AlgohostError) -> Any:
    """The API's errors, as a page (or JSON for the pages' own scripts), same status and code."""
    if exc.http_status >= 500:
        log.error("%s %s failed: %s", request.method, request.path, exc.message,
                  exc_info=exc if exc.http_status == 500 else None)
    if wants_json():
        return {"error": exc.to_dict()}, exc.http_status
    return render_template("error.html", error=exc, owner=g.get("algohost_owner")), \
        exc.http_status
