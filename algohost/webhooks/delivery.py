"""One webhook attempt over HTTP: POST, 15 s in all, no redirects, a small slice of the reply kept.

The 15 s bound the whole attempt, not each read: a receiver that trickles a byte at a
time loses its connection at the deadline instead of holding a worker thread forever.
Unless private addresses are allowed, the connected peer is checked too, so DNS rebinding
cannot reach a private network; proxies from the environment are never used.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError

from algohost.errors import WebhookRefused
from algohost.webhooks.urls import Resolver, check_address, check_url, system_resolver

TIMEOUT_S = 15.0
MAX_RESPONSE_BYTES = 1024
USER_AGENT = "algohost-webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    response_body: str = ""
    retry_after: str | None = None
    refused: bool = False  # never worth retrying: the URL or its address is not allowed

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None \
            and 200 <= self.status_code < 300


class _Opened(threading.local):
    """The sockets this thread's attempt has opened, so its deadline can cut them."""

    sockets: list[socket.socket] | None = None


_opened = _Opened()


def _track(sock: Any) -> Any:
    if _opened.sockets is not None:
        _opened.sockets.append(sock)
    return sock


def _checked(sock: Any, host: str) -> Any:
    try:
        check_address(str(sock.getpeername()[0]), host)
    except BaseException:
        sock.close()
        raise
    return _track(sock)


class _TrackedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        return _track(super()._new_conn())


class _TrackedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> Any:
        return _track(super()._new_conn())


class _PublicHTTPConnection(HTTPConnection):
    def _new_conn(self) -> Any:
        return _checked(super()._new_conn(), self.host)


class _PublicHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> Any:
        return _checked(super()._new_conn(), self.host)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class TrackedAdapter(HTTPAdapter):
    """Lets the attempt's deadline find every socket it opened."""

    pools: dict[str, type[HTTPConnectionPool]] = {"http": _TrackedHTTPPool,
                                                  "https": _TrackedHTTPSPool}

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self.pools)


class PublicOnlyAdapter(TrackedAdapter):
    """Refuses, at connect time, any peer address that is not public."""

    pools = {"http": _PublicHTTPPool, "https": _PublicHTTPSPool}


@contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Shut down every socket the block opens once `seconds` have passed; the event tells
    whether that happened. A blocked read then ends at once, however slowly bytes came."""
    sockets: list[socket.socket] = []
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        for sock in list(sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already: the attempt ended as the deadline came

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    _opened.sockets = sockets
    timer.start()
    try:
        yield expired
    finally:
        timer.cancel()
        _opened.sockets = None


class HttpPoster:
    """Sends one attempt; never raises for what the receiver or the network does."""

    def __init__(self, allow_private: bool, timeout_s: float = TIMEOUT_S,
                 resolve: Resolver = system_resolver) -> None:
        self.allow_private, self.timeout_s, self.resolve = allow_private, timeout_s, resolve

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # a proxy would hide the real peer from the address check
        adapter = TrackedAdapter() if self.allow_private else PublicOnlyAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> AttemptResult:
        started = time.monotonic()

        def elapsed() -> float:
            return round((time.monotonic() - started) * 1000, 3)

        too_long = f"the receiver took longer than {self.timeout_s:g} s in all"
        with deadline(self.timeout_s) as expired:
            try:
                check_url(url, self.allow_private, self.resolve)
                with self._session() as session:
                    response = session.post(url, data=body, timeout=self.timeout_s,
                                            stream=True, allow_redirects=False,
                                            headers={"User-Agent": USER_AGENT, **headers})
                    try:
                        text = response.raw.read(MAX_RESPONSE_BYTES, decode_content=True)
                    finally:
                        response.close()
            except WebhookRefused as exc:
                return AttemptResult(None, elapsed(), f"refused: {exc.message}", refused=True)
            except (requests.RequestException, OSError, HTTPError) as exc:
                return AttemptResult(None, elapsed(),
                                     too_long if expired.is_set() else _describe(exc))
        latency = elapsed()
        error = None
        if 300 <= response.status_code < 400:
            error = f"redirects are not followed (HTTP {response.status_code})"
        elif response.status_code < 200 or response.status_code >= 300:
            error = f"HTTP {response.status_code}"
        elif expired.is_set() or latency > self.timeout_s * 1000:
            error = too_long
        return AttemptResult(response.status_code, latency, error,
                             text.decode("utf-8", errors="replace"),
                             response.headers.get("Retry-After"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed: {_root(exc)}"
    return f"{type(exc).__name__}: {exc}"


def _root(exc: BaseException) -> str:
    """The innermost cause (bounded: chains may loop), which names what actually failed."""
    for _ in range(10):
        inner = exc.__cause__ or exc.__context__
        if inner is None:
            break
        exc = inner
    return str(exc)[:300]
