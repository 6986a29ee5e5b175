"""About the service itself: health, the OpenAPI document, and who the caller is.

Health and the document need no key. The health check only pings Redis and the
Docker engine (answers at most a second old), with short timeouts, and never raises.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint

from algohost.api.auth import current_owner
from algohost.api.context import services
from algohost.api.routing import Reply, route
from algohost.api.schemas import Health, OpenAPIDocument, WhoAmI

log = logging.getLogger(__name__)
bp = Blueprint("meta", __name__)


class LastAnswer:
    """A health check's last answer. A health check must answer at once even while what it
    checks is slow (the engine starting a hundred containers, an event loop with a
    thousand waiters): once the last answer is older than `max_age_s`, one background
    thread checks again while callers get the last answer; only an answer older than
    `stale_s` (or none yet) is waited for."""

    def __init__(self, check: Callable[[], bool], max_age_s: float = 1.0,
                 stale_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.check, self.max_age_s, self.stale_s, self.clock = check, max_age_s, stale_s, clock
        self._lock = threading.Lock()  # held by whoever is checking
        self._last: tuple[float, bool] | None = None  # (when, answered)

    def __call__(self) -> bool:
        last = self._last
        if last is None or self.clock() - last[0] >= self.stale_s:
            with self._lock:
                return self._refresh()
        if self.clock() - last[0] >= self.max_age_s and self._lock.acquire(blocking=False):
            threading.Thread(target=self._refresh_and_release, name="health-check",
                             daemon=True).start()
        return last[1]

    def _refresh_and_release(self) -> None:
        try:
            self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> bool:
        answered = self.check()
        self._last = (self.clock(), answered)
        return answered


class DockerPing(LastAnswer):
    """Whether the Docker engine answers, as last seen (a client made on first use)."""

    def __init__(self, docker_url: str, timeout_s: float = 2.0, **timing: Any) -> None:
        super().__init__(self._ping, **timing)
        self.docker_url, self.timeout_s = docker_url, timeout_s
        self._client: Any = None

    def _ping(self) -> bool:
        try:
            if self._client is None:
                import docker  # only health needs it; keep it off the API's import path

                self._client = docker.DockerClient(base_url=self.docker_url,
                                                   timeout=self.timeout_s)
            return bool(self._client.ping())
        except Exception as exc:  # any failure means "not usable now"
            log.warning("docker ping failed: %s", exc)
            self._drop()
            return False

    def _drop(self) -> None:
        client, self._client = self._client, None
        try:
            if client is not None:
                client.close()
        except Exception:  # closing a broken client may fail too; nothing to do
            pass


@route(bp, "GET", "/healthz", summary="Is the service usable (Redis and Docker answer)?",
       responses={200: Health, 503: Health}, auth=False)
def healthz() -> Reply:
    svc = services()
    redis_ok, docker_ok = svc.redis_ping(), svc.docker_ping()
    healthy = redis_ok and docker_ok
    health = Health(status="ok" if healthy else "degraded", redis=redis_ok, docker=docker_ok)
    return Reply(health, 200 if healthy else 503)


@route(bp, "GET", "/v1/openapi.json", summary="This API's OpenAPI 3.1 document",
       responses={200: OpenAPIDocument}, auth=False)
def openapi_json() -> Reply:
    return Reply(OpenAPIDocument(services().openapi))


@route(bp, "GET", "/v1/whoami", summary="The owner of the API key", responses={200: WhoAmI})
def whoami() -> Reply:
    return Reply(WhoAmI(owner=current_owner()))
