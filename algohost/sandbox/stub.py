"""An in-process sandbox for fast tests of the layers above it (worker, pool).

It runs plain Python callables, with no isolation at all: never use it for real
algorithm code. Failure modes a container has are simulated by raising `SimulatedExit`.
Its outcomes match the Docker sandbox's (tests/integration/test_sandbox_contract.py).
"""

from __future__ import annotations

import itertools
import json
import resource
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from algohost.config import MiB, SandboxSettings
from algohost.errors import ImageMissing, SandboxError
from algohost.sandbox.base import (
    CallOutcome,
    CallPeer,
    ContainerSpec,
    ExitReason,
    Sandbox,
    Session,
    exit_error,
)

Algorithm = Callable[[Any], Any]


class SimulatedExit(Exception):
    """Raise from a stub algorithm to end the call as a container would (TIMEOUT, OOM...)."""

    def __init__(self, reason: ExitReason, message: str = "") -> None:
        super().__init__(message or reason.value)
        self.reason = reason


def _peak_memory_bytes() -> int:
    # What the runner reports from inside a container: its process's peak resident size.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class StubSession(Session):
    def __init__(self, spec: ContainerSpec, func: Algorithm, container_id: str,
                 max_output_bytes: int) -> None:
        self.spec = spec
        self.max_output_bytes = max_output_bytes
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
        peer: CallPeer | None = None,
    ) -> CallOutcome:
        if self.closed:
            raise SandboxError("this stub session is closed")
        try:  # what crosses the pipe to a container is JSON, both ways
            payload = json.loads(json.dumps(payload, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"the input is not JSON-serialisable: {exc}") from exc
        self.calls += 1
        self.inputs.append(payload)
        if should_cancel():
            return self._end(ExitReason.CANCELED, "the call was canceled")
        started = time.perf_counter()
        try:
            output = self._func(payload)
            text = json.dumps(output, allow_nan=False, ensure_ascii=False,
                              separators=(",", ":"))
        except SimulatedExit as exc:
            return self._end(exc.reason, str(exc))
        except Exception as exc:
            error = {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
            }
            return self._outcome(ExitReason.EXCEPTION, started, error=error)
        size = len(text.encode())
        if size > self.max_output_bytes:
            message = f"output is {size} bytes of JSON; the limit is {self.max_output_bytes}"
            return self._outcome(ExitReason.OUTPUT_TOO_LARGE, started,
                                 error=exit_error(ExitReason.OUTPUT_TOO_LARGE, message))
        return self._outcome(ExitReason.SUCCEEDED, started, output=json.loads(text))

    def _outcome(self, reason: ExitReason, started: float, output: Any = None,
                 error: dict[str, Any] | None = None) -> CallOutcome:
        """A call the algorithm ended itself: the session serves the next one."""
        run_ms = (time.perf_counter() - started) * 1000.0
        return CallOutcome(reason, output=output, error=error, run_ms=run_ms,
                           peak_memory_bytes=_peak_memory_bytes(), reusable=True)

    def _end(self, reason: ExitReason, message: str) -> CallOutcome:
        """A call ended as a container ends one: killed (timeout, cancel, crash, OOM), so
        never reused; only an output over the limit leaves the runner serving."""
        if reason is ExitReason.OUTPUT_TOO_LARGE:  # the runner refuses it and lives on
            return self._outcome(reason, time.perf_counter(), error=exit_error(reason, message))
        self.close()
        peak = self.spec.limits.memory_mb * MiB if reason is ExitReason.OOM else 0
        return CallOutcome(reason, error=exit_error(reason, message), peak_memory_bytes=peak)

    def close(self) -> None:
        self.closed = True


class StubSandbox(Sandbox):
    """Starts a StubSession per `start`, running `algorithms[spec.build_id]`; a build
    with no algorithm is a missing image."""

    def __init__(self, algorithms: Mapping[str, Algorithm], available: bool = True,
                 settings: SandboxSettings | None = None) -> None:
        self.algorithms = dict(algorithms)
        self.available = available
        self.settings = settings or SandboxSettings()
        self.sessions: list[StubSession] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, spec: ContainerSpec) -> StubSession:
        started = time.perf_counter()
        func = self.algorithms.get(spec.build_id)
        if func is None:
            raise ImageMissing(f"{spec.image} is not on this stub engine", build_id=spec.build_id)
        with self._lock:
            session = StubSession(spec, func, f"stub-{next(self._ids)}",
                                  self.settings.max_output_bytes)
            self.sessions.append(session)
        session.cold_start_ms = (time.perf_counter() - started) * 1000.0
        return session

    def ping(self) -> bool:
        return self.available

    def remove_orphans(self, owner_label: str | None = None) -> int:
        return 0

    @property
    def open_sessions(self) -> list[StubSession]:
        with self._lock:
            return [s for s in self.sessions if not s.closed]
