"""A version's build log as server-sent events, followed live while it builds.

A follower waits on the build's pub/sub channel (told of each line and of the end), never
on a loop of reads, and under the API's gevent workers it parks a greenlet, not a thread.
Each event's id is the byte offset after its line, so a client that reconnects with
`Last-Event-ID` resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import redis
from flask import Blueprint, request
from pydantic import BaseModel, Field

from algohost.api.access import owned_algorithm
from algohost.api.context import services
from algohost.api.routing import EventStream, Header, Streamed, route
from algohost.errors import AlgohostError
from algohost.store.registry import BuildRecord, BuildStatus, Registry

bp = Blueprint("buildlogs", __name__)

TERMINAL = frozenset({BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.DELETED})
WAKE_S = 1.0  # a missed notice (a worker of older code) costs at most this
KEEPALIVE_S = 15.0  # a comment line, so proxies do not close an idle stream
FOLLOW_MARGIN_S = 120  # past the build timeout, a follower is let go in any case
LAST_EVENT_ID = Header("Last-Event-ID", "Resume after this event id (a byte offset of the log)",
                       "1024", pattern=r"^[0-9]{1,12}$")


class LogsQuery(BaseModel):
    follow: bool = Field(default=False, description="Keep the stream open until the build "
                         "ends, sending lines as they are written")


def _event(data: str, event: str | None = None, event_id: int | None = None) -> bytes:
    head = (f"event: {event}\n" if event else "") + (f"id: {event_id}\n" if event_id else "")
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return (head + body + "\n").encode()


def _end(build: BuildRecord) -> bytes:
    return _event(json.dumps({"status": build.status.value, "error": build.error,
                              "reason": build.reason}), "end")


def _lines(registry: Registry, build_id: str, offset: int) -> tuple[list[bytes], int]:
    """Whole lines written since `offset`, as events, and the offset after them."""
    data = registry.logs_from(build_id, offset)
    complete = data[: data.rfind(b"\n") + 1]
    events = []
    for line in complete.splitlines(keepends=True):
        offset += len(line)
        events.append(_event(line.decode("utf-8", "replace").rstrip("\n"), event_id=offset))
    return events, offset


def follow(registry: Registry, build: BuildRecord, offset: int, limit_s: float
           ) -> Iterator[bytes]:
    """Lines from `offset` until the build ends (or `limit_s` passes), then an end event."""
    pubsub = registry.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(registry.log_channel(build.id))  # before reading: nothing falls between
    deadline = time.monotonic() + limit_s
    quiet_since = time.monotonic()
    try:
        yield from _follow_until_end(registry, pubsub, build, offset, deadline, quiet_since)
    except AlgohostError as exc:
        # The response has started: a vanished build or a lost store ends the stream with
        # an event the client can read, never a traceback in the middle of it.
        yield _event(json.dumps(exc.to_dict()), "error")
    except redis.RedisError:
        yield _event(json.dumps({"code": "store_unavailable",
                                 "message": "the store went away; follow again"}), "error")
    finally:
        pubsub.close()


def _follow_until_end(registry: Registry, pubsub: Any, build: BuildRecord, offset: int,
                      deadline: float, quiet_since: float) -> Iterator[bytes]:
    while True:
        events, offset = _lines(registry, build.id, offset)
        yield from events
        build = registry.get_build(build.id)
        if build.status in TERMINAL:
            events, offset = _lines(registry, build.id, offset)
            yield from events
            yield _end(build)
            return
        if time.monotonic() >= deadline:
            yield _event("the build goes on; follow again to see the rest", "timeout")
            return
        if events:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            yield b": keepalive\n\n"
            quiet_since = time.monotonic()
        pubsub.get_message(timeout=WAKE_S)
        while pubsub.get_message(timeout=0.0) is not None:
            pass  # one read serves every notice that came meanwhile


@route(bp, "GET", "/v1/algorithms/<owner>/<name>/versions/<version>/logs",
       summary="A version's build log as server-sent events; follow=1 streams it live until "
               "the build ends (an `end` event carries its status)",
       query=LogsQuery, headers=(LAST_EVENT_ID,), responses={200: EventStream},
       errors=(403, 404))
def build_logs(owner: str, name: str, version: str, query: LogsQuery) -> Streamed:
    owned_algorithm(owner, name)  # the author's alone; a private one is 404 to others
    svc = services()
    build = svc.registry.find(owner, name, version)
    resume = request.headers.get("Last-Event-ID", "")
    offset = int(resume) if resume.isdigit() and len(resume) <= 12 else 0
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not query.follow:
        events, _ = _lines(svc.registry, build.id, offset)
        return Streamed(iter([*events, _end(build)]), "text/event-stream", headers)
    limit = svc.settings.sandbox.build_timeout_s + FOLLOW_MARGIN_S
    return Streamed(follow(svc.registry, build, offset, limit), "text/event-stream", headers)
