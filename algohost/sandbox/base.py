"""The sandbox seam: what the worker asks of whatever runs algorithm code.

A `Sandbox` starts `Session`s (one container each) for a build and reports
what happened to a call as a `CallOutcome`. It never touches Redis or Vault:
secrets arrive as plain values in `ContainerSpec.secrets` and leave no trace.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from algohost.manifest import ResourcesSection


class ExitReason(StrEnum):
    """Why a call ended; stored on the job record as `reason`."""

    SUCCEEDED = "succeeded"
    EXCEPTION = "exception"  # the algorithm raised
    TIMEOUT = "timeout"
    OOM = "oom"
    CRASHED = "crashed"  # the container or runner died for another reason
    # The engine went away under the call (stopped, restarted, or the container was stopped
    # or removed from outside): nothing the algorithm did, so the call may run again.
    SANDBOX_LOST = "sandbox_lost"
    CANCELED = "canceled"
    OUTPUT_TOO_LARGE = "output_too_large"
    ARTIFACTS_TOO_LARGE = "artifacts_too_large"  # past the caps on files under /outputs
    START_FAILED = "start_failed"  # the container or the entrypoint import failed


# The error type of a call the container ended, not the algorithm: every sandbox
# reports these names (the runner says "OutputTooLarge" itself).
EXIT_ERROR_TYPES = {
    ExitReason.TIMEOUT: "Timeout",
    ExitReason.CANCELED: "Canceled",
    ExitReason.OOM: "OutOfMemory",
    ExitReason.CRASHED: "Crashed",
    ExitReason.SANDBOX_LOST: "SandboxLost",
    ExitReason.START_FAILED: "StartFailed",
    ExitReason.OUTPUT_TOO_LARGE: "OutputTooLarge",
    ExitReason.ARTIFACTS_TOO_LARGE: "ArtifactsTooLarge",
}


def exit_error(reason: ExitReason, message: str) -> dict[str, Any]:
    """The `error` of an outcome the container ended for `reason`."""
    return {"type": EXIT_ERROR_TYPES[reason], "message": message, "traceback": ""}


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 30.0
    memory_mb: int = 512
    cpus: float = 1.0
    network: bool = False

    @classmethod
    def of(cls, resources: ResourcesSection) -> Limits:
        """The limits a manifest's [resources] asks for: the same wherever it runs."""
        return cls(timeout_s=float(resources.timeout_s), memory_mb=resources.memory_mb,
                   cpus=float(resources.cpus), network=resources.network)


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to start one container of a build."""

    build_id: str
    image: str
    limits: Limits = field(default_factory=Limits)
    labels: dict[str, str] = field(default_factory=dict)
    # Values must never reach a log line: a spec's repr leaves them out.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    secrets_as_env: bool = False
    secrets_version: str = ""
    # (host path, path in the container), each mounted read-only: a build's models.
    mounts: tuple[tuple[str, str], ...] = ()
    # The owner whose calls this container serves. A container keeps what a call leaves
    # in /tmp or in module globals, so it never serves two calling owners.
    tenant: str = ""


@dataclass
class CallOutcome:
    reason: ExitReason
    output: Any = None
    error: dict[str, Any] | None = None  # {"type", "message", "traceback"}
    logs: str = ""  # as the container sent them: not yet masked, nor cut to their limit
    logs_dropped: int = 0  # bytes the container cut from the start of `logs`
    run_ms: float = 0.0  # measured by the worker, not reported by the container
    peak_memory_bytes: int = 0  # measured by the container's cgroup
    reusable: bool = False  # the container may serve another call

    @property
    def succeeded(self) -> bool:
        return self.reason is ExitReason.SUCCEEDED


class CallAborted(Exception):
    """Raised by a CallPeer to end the call: the container is killed with this reason."""

    def __init__(self, reason: ExitReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CallPeer(abc.ABC):
    """The worker's side of what a running call asks for (artifacts, `data://` reads).

    The sandbox only carries the messages; checking rights and storing bytes is the
    peer's business, so the container never reaches a store itself."""

    @abc.abstractmethod
    def handle(self, msg: dict[str, Any]) -> Iterable[dict[str, Any]]:
        """Answer one ARTIFACT or REQUEST message with the messages to send back."""


class Session(abc.ABC):
    """One started container whose runner has imported the entrypoint."""

    spec: ContainerSpec
    container_id: str
    cold_start_ms: float
    startup_logs: str
    startup_logs_dropped: int = 0  # bytes the runner cut from the start of startup_logs
    calls: int

    @abc.abstractmethod
    def call(
        self,
        payload: Any,
        timeout_s: float,
        should_cancel: Callable[[], bool] = lambda: False,
        peer: CallPeer | None = None,
    ) -> CallOutcome:
        """Send one input and wait for its outcome; kill the container on timeout,
        cancel, crash or memory exhaustion (the outcome is then not reusable). The
        call's requests go to `peer`; without one they are refused."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and remove the container. Safe to call twice."""

    @property
    @abc.abstractmethod
    def alive(self) -> bool: ...


class Sandbox(abc.ABC):
    @abc.abstractmethod
    def start(self, spec: ContainerSpec) -> Session:
        """Start a container and wait until its runner is ready.

        Raises ContainerStartFailed (with the runner's error, if any)."""

    @abc.abstractmethod
    def ping(self) -> bool: ...

    @abc.abstractmethod
    def remove_orphans(self, owner_label: str | None = None) -> int:
        """Remove algohost containers (by label) not owned by a live session."""
