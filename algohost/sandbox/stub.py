"""An in-process sandbox for fast tests of the layers above it (worker, pool).

It runs plain Python callables, with no isolation at all: never use it for real
algorithm code. Failure modes a container has are simulated by raising `SimulatedExit`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from algohost.errors import ContainerStartFailed, SandboxError
from algohost.sandbox.base import CallOutcome, ContainerSpec, ExitReason, Sandbox, Session

Algorithm = Callable[[Any], Any]


class SimulatedExit(Exception):
    """Raise from a stub algorithm to end the call as a container would (TIMEOUT, OOM...)."""

    def __init__(self, reason: ExitReason, message: str = "") -> None:
        super().__init__(message or reason.value)
        self.reason = reason


class StubSession(Session):
    def __init__(self, spec: ContainerSpec, func: Algorithm, container_id: str) -> None:
        self.spec = spec
        self.container_id = container_id
        self.cold_start_ms = 0.0
        self.startup_logs = ""
        self.calls = 0
        self.closed = False
        self.inputs: list[Any] = []
        self._func = func

    @property
    def alive(self) -> bool:
        return not self.closed

    def call(
        self,
        payload: Any,
        timeout_s: float,
        should_cancel: Callable[[], bool] = lambda: False,
    ) -> CallOutcome:
        if self.closed:
            raise SandboxError("this stub session is closed")
        self.calls += 1
        self.inputs.append(payload)
        if should_cancel():
            return self._end(ExitReason.CANCELED, "the call was canceled")
        started = time.perf_counter()
        try:
            # The JSON round trip catches outputs a real runner could not send back.
            output = json.loads(json.dumps(self._func(payload), allow_nan=False))
        except SimulatedExit as exc:
            return self._end(exc.reason, str(exc))
        except Exception as exc:
            error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
            return CallOutcome(ExitReason.EXCEPTION, error=error, reusable=True)
        run_ms = (time.perf_counter() - started) * 1000.0
        return CallOutcome(ExitReason.SUCCEEDED, output=output, run_ms=run_ms, reusable=True)

    def _end(self, reason: ExitReason, message: str) -> CallOutcome:
        # A real container is killed for all of these but OUTPUT_TOO_LARGE.
        reusable = reason is ExitReason.OUTPUT_TOO_LARGE
        if not reusable:
            self.close()
        error = {"type": reason.value, "message": message, "traceback": ""}
        return CallOutcome(reason, error=error, reusable=reusable)

    def close(self) -> None:
        self.closed = True


class StubSandbox(Sandbox):
    """Starts a StubSession per `start`, running `algorithms[spec.build_id]`."""

    def __init__(self, algorithms: Mapping[str, Algorithm], available: bool = True) -> None:
        self.algorithms = dict(algorithms)
        self.available = available
        self.sessions: list[StubSession] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, spec: ContainerSpec) -> StubSession:
        func = self.algorithms.get(spec.build_id)
        if func is None:
            raise ContainerStartFailed(f"no stub algorithm for build {spec.build_id}")
        with self._lock:
            session = StubSession(spec, func, f"stub-{next(self._ids)}")
            self.sessions.append(session)
        return session

    def ping(self) -> bool:
        return self.available

    def remove_orphans(self, owner_label: str | None = None) -> int:
        return 0

    @property
    def open_sessions(self) -> list[StubSession]:
        with self._lock:
            return [s for s in self.sessions if not s.closed]
