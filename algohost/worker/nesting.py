"""Algorithms calling algorithms: the worker's side of `algohost_runtime.call()`.

The child is an ordinary job, linked to its parent (`parent_job`; the parent lists it in
`children`), owned by the parent's caller and allowed only what that caller may call. It
runs inline, in the worker thread that serves the parent's call and waits for it anyway:
a chain of any depth holds one calls-worker thread, so waiting parents can never take the
threads their own children need. Nothing here sends a Celery message.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from algohost.clock import now_iso
from algohost.config import Settings
from algohost.errors import (
    AlgohostError,
    AlgorithmNotFound,
    CallDepthExceeded,
    CallFanoutExceeded,
    NestedCallTimeout,
    ParentCanceled,
    PayloadTooLarge,
)
from algohost.names import AlgorithmRef
from algohost.sandbox.runner import protocol
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.registry import Registry, royalty_of
from algohost.store.usage import ComputeBudget
from algohost.submission import new_job_id

PART_BYTES = 256 * 1024  # raw bytes of the reply per RESPONSE part
FAILED_CHILD_STATUS = 424  # the HTTP-style status of a call that ran and did not succeed
MIN_CHILD_S = 1  # a child needs at least this much of its parent's time left

RunInline = Callable[[str, Callable[[], bool]], None]


class NestedCalls:
    """One running job's `call` requests: each one submits a child job and runs it here.

    `outer` is the parent's cancel watch: the child polls it while it runs, which keeps
    the parent's lease alive and carries a cancel of the parent down to the child."""

    def __init__(self, jobs: JobStore, registry: Registry, settings: Settings,
                 parent: JobRecord, run_inline: RunInline, outer: Callable[[], bool],
                 clock: Callable[[], float] = time.monotonic,
                 budget: ComputeBudget | None = None) -> None:
        self.jobs, self.registry, self.settings = jobs, registry, settings
        self.budget = budget  # a call is a new call of the caller's: refused once it is spent
        self.parent, self.run_inline, self.outer, self.clock = parent, run_inline, outer, clock
        self.deadline = clock() + parent.timeout_s
        self.children = list(parent.children)

    def __call__(self, msg: dict[str, Any]) -> Iterator[dict[str, Any]]:
        request_id = str(msg.get("id", ""))
        try:
            child = self.submit(msg)
        except AlgohostError as exc:
            yield _refused(request_id, exc.message, exc.code, exc.http_status, type(exc).__name__)
            return
        self.run_inline(child.id, self.outer)
        done = self.jobs.get(child.id)
        if done is None or done.status is not JobStatus.SUCCEEDED:
            yield _failed(request_id, child, done)
            return
        yield from _parts(request_id, {"output": done.output, "job": child.id})

    def submit(self, msg: dict[str, Any]) -> JobRecord:
        """Check the call with the caller's rights and the bounds; write the child's record."""
        ref = AlgorithmRef.parse(str(msg.get("algorithm", ""))[:200], ranges=True)
        caller = self.parent.owner
        if ref.owner != caller and not self.registry.is_public(ref.owner, ref.name):
            raise AlgorithmNotFound(f"algorithm {ref.base} does not exist")
        depth = self.parent.depth + 1
        if depth > self.settings.max_call_depth:
            raise CallDepthExceeded(f"calls nest at most {self.settings.max_call_depth} deep; "
                                    f"this one would be call {depth}",
                                    limit=self.settings.max_call_depth)
        if len(self.children) >= self.settings.max_call_children:
            raise CallFanoutExceeded(f"a job's algorithm makes at most "
                                     f"{self.settings.max_call_children} calls",
                                     limit=self.settings.max_call_children)
        if self.outer():
            raise ParentCanceled(f"job {self.parent.id} was canceled")
        if self.budget is not None:
            self.budget.check(caller)
        left = self.deadline - self.clock()
        if left < MIN_CHILD_S:
            raise NestedCallTimeout(f"job {self.parent.id} has {max(left, 0):.1f} s left; a "
                                    f"call needs at least {MIN_CHILD_S} s")
        payload = msg.get("input")
        if len(json.dumps(payload)) > self.settings.max_input_bytes:
            raise PayloadTooLarge(f"a call's input is at most {self.settings.max_input_bytes}"
                                  " bytes", limit=self.settings.max_input_bytes)
        build = self.registry.resolve(ref.owner, ref.name, ref.version)
        child = JobRecord(
            id=new_job_id(), owner=caller, status=JobStatus.QUEUED, requested=str(ref),
            algorithm=build.ref, build_id=build.id, image=build.image, input=payload,
            created_at=now_iso(), timeout_s=self._timeout(build.manifest.resources.timeout_s,
                                                          msg.get("timeout_s"), left),
            royalty_micros=royalty_of(build, caller), parent_job=self.parent.id, depth=depth)
        self.jobs.create(child)
        self.children.append(child.id)
        self.jobs.update(self.parent.id, children=self.children)
        return child

    def _timeout(self, manifest_s: int, wanted: Any, left: float) -> int:
        """The child's limit: its own, the caller's wish, but never past its parent's end."""
        limit = min(manifest_s, self.settings.max_timeout_s, math.floor(left))
        if isinstance(wanted, int | float) and not isinstance(wanted, bool) \
                and math.isfinite(wanted) and wanted >= 1:
            limit = min(limit, math.floor(wanted))
        return max(int(limit), MIN_CHILD_S)


def _refused(request_id: str, message: str, code: str, status: int, kind: str,
             job: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {**protocol.error_info(kind, message), "code": code,
                             "status": status}
    if job is not None:
        error["job"] = job
    return {"type": protocol.RESPONSE, "id": request_id, "ok": False, "end": True,
            "error": error}


def _failed(request_id: str, child: JobRecord, done: JobRecord | None) -> dict[str, Any]:
    if done is None:
        return _refused(request_id, f"job {child.id} expired", "job_not_found", 404,
                        "CallFailed", child.id)
    error = done.error or {"type": done.status.value, "message": "", "traceback": None}
    message = f"{done.algorithm} {done.status.value}: {error['type']}: {error['message']}"
    return _refused(request_id, message, done.reason or done.status.value,
                    FAILED_CHILD_STATUS, "CallFailed", child.id)


def _parts(request_id: str, reply: dict[str, Any]) -> Iterator[dict[str, Any]]:
    data = json.dumps(reply, separators=(",", ":")).encode()
    for start in range(0, max(len(data), 1), PART_BYTES):
        yield {"type": protocol.RESPONSE, "id": request_id, "ok": True,
               "end": start + PART_BYTES >= len(data),
               "data": base64.b64encode(data[start:start + PART_BYTES]).decode("ascii")}
