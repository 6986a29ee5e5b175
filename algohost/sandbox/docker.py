"""The Docker backend of the sandbox: one hardened container per session, spoken to over attach.

Every docker-py error is translated here into algohost's errors (`raise ... from exc`).
Secret values travel only over the container's stdin; they never go into the container's
configuration, environment, labels or logs.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.transport.unixconn import UnixHTTPAdapter

from algohost.config import MiB, SandboxSettings
from algohost.errors import (
    AlgohostError,
    ContainerStartFailed,
    ImageMissing,
    SandboxError,
    SandboxUnavailable,
)
from algohost.jsonlimits import MAX_JSON_DEPTH, nesting_depth
from algohost.sandbox.attach import AttachChannel, ProtocolViolation
from algohost.sandbox.base import (
    CallAborted,
    CallOutcome,
    CallPeer,
    ContainerSpec,
    ExitReason,
    Sandbox,
    Session,
    exit_error,
)
from algohost.sandbox.cgroup import ContainerCgroup
from algohost.sandbox.nameservers import allowed_resolvers
from algohost.sandbox.runner import protocol

log = logging.getLogger(__name__)

LABEL_MANAGED = "algohost.managed"
LABEL_BUILD = "algohost.build"
LABEL_WORKER = "algohost.worker"
POLL_S = 0.2  # how often a waiting call looks at its deadline and its cancel flag
EXIT_WAIT_S = 10
TMP_FREE_MIN = 0.1  # a container whose /tmp has less free than this share is recycled
# A networked container has no IPv6 at all, not even link-local: the fence (inter-container
# traffic off, the egress rules) is IPv4's. Said here, not left to the engine's version.
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


@contextmanager
def translate_docker_errors(
    action: str, failure: type[AlgohostError] = SandboxError
) -> Iterator[None]:
    """Turn docker-py and transport errors into algohost errors, naming what was attempted."""
    try:
        yield
    except docker.errors.APIError as exc:
        raise failure(f"{action}: {exc.explanation or exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise SandboxUnavailable(f"{action}: the Docker engine is not reachable ({exc})") from exc


def docker_client(settings: SandboxSettings, timeout_s: int = 60) -> Any:
    with translate_docker_errors(f"connecting to {settings.docker_url}"):
        client = docker.DockerClient(base_url=settings.docker_url, timeout=timeout_s,
                                     max_pool_size=DOCKER_POOL_SIZE)
    share_one_pool(client)
    return client


DOCKER_POOL_SIZE = 64  # connections kept to the engine: a worker's threads, and some
SOCKET_POOL_KEY = "http+docker://localhost"


def share_one_pool(client: Any) -> None:
    """docker-py keys its Unix-socket connection pools by request URL and keeps 25: with
    dozens of threads starting containers (a handful of URLs each), a pool still in use
    is evicted and closed under another thread's request (seen as a job failed with
    `'NoneType' object has no attribute 'qsize'`). Every request on the socket goes to
    one pool instead."""
    adapter = getattr(client.api, "_custom_adapter", None)
    if isinstance(adapter, UnixHTTPAdapter):
        by_url = adapter.get_connection
        adapter.get_connection = lambda url, proxies=None: by_url(SOCKET_POOL_KEY, proxies)


def network_params(network: str, settings: SandboxSettings) -> dict[str, Any]:
    """What joins a container to one of algohost's fenced networks: the network, no IPv6,
    and only the name servers the egress rules let through."""
    params: dict[str, Any] = {"network": network, "sysctls": dict(NO_IPV6)}
    servers = [str(server) for server in allowed_resolvers(settings)]
    if servers:  # none at all: the rules reject the engine's fallback servers too
        params["dns"] = servers
    return params


def container_params(
    spec: ContainerSpec, settings: SandboxSettings, worker_id: str
) -> dict[str, Any]:
    """The hardened create parameters for one session's container."""
    memory = f"{spec.limits.memory_mb}m"
    params: dict[str, Any] = {
        "stdin_open": True,
        "tty": False,
        "read_only": True,
        "tmpfs": {
            "/tmp": f"size={settings.tmpfs_mb}m,mode=1777",
            "/run/secrets": "size=1m,mode=0700,uid=65534",
            # A call's files become its artifacts; a little over the cap, so that going
            # past it is reported as artifacts_too_large rather than a full disk.
            protocol.DEFAULT_OUTPUTS_DIR:
                f"size={settings.max_artifact_bytes // 1024 + 1024}k,mode=1777",
        },
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "user": "65534:65534",
        "pids_limit": settings.pids_limit,
        "mem_limit": memory,
        "memswap_limit": memory,  # equal to mem_limit: no swap
        "nano_cpus": int(spec.limits.cpus * 1e9),
        "environment": {"HOME": "/tmp"},  # the root filesystem is read-only
        # The operator's ~/.docker/config.json proxies are theirs, not the tenant's.
        "use_config_proxy": False,
        # Outputs cross stdout; the engine must not keep copies of them on disk.
        "log_config": {"type": "none", "config": {}},
        "labels": {
            **spec.labels,
            LABEL_BUILD: spec.build_id,
            LABEL_MANAGED: "1",
            LABEL_WORKER: worker_id,
        },
    }
    if spec.mounts:
        params["volumes"] = {host: {"bind": target, "mode": "ro"} for host, target in spec.mounts}
    # Never the default bridge: a networked call joins the calls network, where
    # containers cannot reach each other and the egress rules fence the rest.
    if spec.limits.network:
        params.update(network_params(settings.calls_network, settings))
    else:
        params["network_mode"] = "none"
    if settings.runtime:
        params["runtime"] = settings.runtime
    return params


# The runner is the container's PID 1: nothing inside can kill it with a signal, and our own
# kills never come this way (they end the call first). Killed or stopped by a signal, not by
# the OOM killer, it was stopped from outside: the engine shutting down, or an operator.
STOPPED_FROM_OUTSIDE = frozenset({128 + 9, 128 + 15})


def _exit_cause(container: Any, memory_mb: int) -> tuple[ExitReason, str]:
    """Why the output of a container ended: the OOM killer, an exit with some code, or the
    engine itself going away (a restart takes every container with it)."""
    try:
        code = container.wait(timeout=EXIT_WAIT_S).get("StatusCode")
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.warning("could not read the exit state of %s: %s", container.id[:12], exc)
        return ExitReason.SANDBOX_LOST, ("the container engine stopped or restarted during "
                                         f"the call ({type(exc).__name__})")
    if oom:
        return ExitReason.OOM, f"the container went over its {memory_mb} MB memory limit"
    if code in STOPPED_FROM_OUTSIDE:
        return ExitReason.SANDBOX_LOST, ("the container was stopped from outside (the engine "
                                         "shutting down or restarting)")
    return ExitReason.CRASHED, f"the container exited with code {code}"


def _init_pid(container: Any) -> int | None:
    """The host pid of a started container's first process (one inspect)."""
    try:
        container.reload()
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        return None
    return int(container.attrs.get("State", {}).get("Pid") or 0) or None


def remove_container(container: Any) -> None:
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        # Left for remove_orphans or `algohost prune`; the caller cannot do better.
        log.warning("could not remove container %s: %s", container.id[:12], exc)


_FAILURE_REASONS = {
    protocol.REASON_OUTPUT_TOO_LARGE: ExitReason.OUTPUT_TOO_LARGE,
    protocol.REASON_ARTIFACTS_TOO_LARGE: ExitReason.ARTIFACTS_TOO_LARGE,
}


def _refusal(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """What a call without a peer hears back: its requests are refused, never left hanging."""
    if msg["type"] != protocol.REQUEST:
        return []
    error = protocol.error_info("Unavailable", "this call cannot make requests")
    return [{"type": protocol.RESPONSE, "id": msg.get("id", ""), "ok": False, "end": True,
             "error": error}]


def _check_result(msg: dict[str, Any]) -> None:
    """A result as the runner writes it; anything else was forged or corrupted."""
    if not isinstance(msg.get("ok"), bool) or not isinstance(msg.get("logs", ""), str):
        raise ProtocolViolation("the container sent a malformed result")
    for name in ("logs_dropped", "processes_left", "tmp_free_bytes"):
        if not isinstance(msg.get(name, 0), int):
            raise ProtocolViolation(f"the container sent a result whose {name} is no integer")


def _result_outcome(msg: dict[str, Any], max_output_bytes: int) -> CallOutcome:
    """What a call came to, as far as the runner's message says; the caps are checked
    again here, since anything in the container could have written the message."""
    _check_result(msg)
    outcome = CallOutcome(reason=ExitReason.SUCCEEDED, logs=msg.get("logs", ""),
                          logs_dropped=max(int(msg.get("logs_dropped", 0)), 0), reusable=True)
    if not msg["ok"]:
        outcome.reason = _FAILURE_REASONS.get(str(msg.get("reason")), ExitReason.EXCEPTION)
        outcome.error = msg.get("error")
        return outcome
    output = msg.get("output")
    depth = nesting_depth(output)
    size = len(protocol.encode(output)) - 1 if depth <= MAX_JSON_DEPTH else 0
    if depth > MAX_JSON_DEPTH:
        # Stored, rendered and sent in webhooks later: refused here, where it is still a call.
        message = f"output nests {depth} levels deep; the limit is {MAX_JSON_DEPTH}"
        outcome.error = dict(protocol.error_info("OutputTooDeep", message))
    elif size > max_output_bytes:
        message = f"output is {size} bytes of JSON; the limit is {max_output_bytes}"
        outcome.error = dict(protocol.error_info("OutputTooLarge", message))
    else:
        outcome.output = output
        return outcome
    outcome.reason = ExitReason.OUTPUT_TOO_LARGE
    return outcome


class DockerSession(Session):
    """A started container whose runner is ready. Used by one thread at a time."""

    def __init__(
        self,
        spec: ContainerSpec,
        container: Any,
        channel: AttachChannel,
        on_close: Callable[[DockerSession], None],
        settings: SandboxSettings | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings or SandboxSettings()
        self.container_id = str(container.id)
        self._cgroup = ContainerCgroup.find(self.container_id, pid=lambda: _init_pid(container))
        # Made once the runner is ready: what it started itself (a notebook's kernel) is no
        # call's leftover.
        started = self._cgroup.processes() if self._cgroup is not None else None
        self._own_processes = max(started or 1, 1)
        self.cold_start_ms = 0.0
        self.startup_logs = ""
        self.calls = 0
        self._container = container
        self._channel = channel
        self._on_close = on_close
        self._closed = False
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        if self._closed:
            return False
        try:
            self._channel.poll()
        except (OSError, ProtocolViolation):
            return False
        return not self._channel.eof

    def call(
        self,
        payload: Any,
        timeout_s: float,
        should_cancel: Callable[[], bool] = lambda: False,
        peer: CallPeer | None = None,
    ) -> CallOutcome:
        if self._closed:
            raise SandboxError("this container session is closed")
        call_id = uuid.uuid4().hex
        try:
            line = protocol.encode({"type": protocol.CALL, "id": call_id, "input": payload})
        except (TypeError, ValueError) as exc:
            raise SandboxError(f"the input is not JSON-serialisable: {exc}") from exc
        self.calls += 1
        try:
            return self._wait(call_id, line, timeout_s, should_cancel, peer)
        except BaseException:
            self.close()  # never leave a container half-way through a call
            raise

    def _wait(
        self, call_id: str, line: bytes, timeout_s: float, should_cancel: Callable[[], bool],
        peer: CallPeer | None,
    ) -> CallOutcome:
        if self._cgroup is not None:
            self._cgroup.reset_peak()
        started = time.monotonic()
        deadline = started + timeout_s
        try:
            self._channel.send(line)
        except OSError:
            return self._died(started)
        while True:
            try:
                msg = self._channel.receive(max(0.0, min(POLL_S, deadline - time.monotonic())))
                outcome = None
                if msg is not None and msg["type"] in (protocol.ARTIFACT, protocol.REQUEST):
                    replies = peer.handle(msg) if peer is not None else _refusal(msg)
                    for reply in replies:
                        self._channel.send(protocol.encode(reply))
                    continue
                if msg is not None and (msg["type"] != protocol.RESULT
                                        or msg.get("id") != call_id):
                    # The runner sends parts, requests and one result per call, nothing
                    # else: a frame the algorithm wrote itself, or a corrupted stream.
                    raise ProtocolViolation(f"the container sent an unexpected "
                                            f"{str(msg['type'])[:40]!r} message")
                if msg is not None:
                    outcome = _result_outcome(msg, self.settings.max_output_bytes)
            except CallAborted as exc:
                return self._kill(exc.reason, str(exc), started)
            except OSError:
                return self._died(started)
            except ProtocolViolation as exc:
                return self._kill(ExitReason.CRASHED, f"{exc}; the container was stopped",
                                  started)
            if outcome is not None and msg is not None:
                # Timed and weighed here, never as the container says.
                outcome.run_ms = (time.monotonic() - started) * 1000.0
                outcome.peak_memory_bytes = self._peak_memory()
                outcome.reusable = self._clean_after(msg)
                return outcome
            if self._channel.eof:
                return self._died(started)
            if time.monotonic() >= deadline:
                message = f"the call did not finish within {timeout_s:g} s"
                return self._kill(ExitReason.TIMEOUT, message, started)
            if should_cancel():
                return self._kill(ExitReason.CANCELED, "the call was canceled", started)

    def reload(self, files: dict[str, bytes]) -> float:
        """Have the runner import `files` in place of its code, keeping the container warm
        (`algohost run --watch`); returns the import's milliseconds. A load error raises
        ContainerStartFailed and leaves the previous code serving."""
        encoded = {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}
        try:
            self._channel.send(protocol.encode({"type": protocol.RELOAD, "files": encoded}))
        except OSError as exc:
            self.close()
            raise ContainerStartFailed("the container ended before the reload",
                                       build_id=self.spec.build_id) from exc
        deadline = time.monotonic() + self.settings.start_timeout_s
        while time.monotonic() < deadline and not self._channel.eof:
            try:
                msg = self._channel.receive(max(0.0, min(POLL_S, deadline - time.monotonic())))
            except (OSError, ProtocolViolation):
                break
            if msg is not None and msg["type"] == protocol.READY:
                return float(msg.get("import_ms") or 0.0)
            if msg is not None and msg["type"] == protocol.LOAD_ERROR:
                error = msg.get("error") or exit_error(ExitReason.START_FAILED, "reload failed")
                raise ContainerStartFailed(f"{error.get('type')}: {error.get('message')}",
                                           build_id=self.spec.build_id, error=error,
                                           logs=str(msg.get("logs", "")))
        self.close()
        raise ContainerStartFailed("the runner did not take the new code within "
                                   f"{self.settings.start_timeout_s:g} s",
                                   build_id=self.spec.build_id)

    def _peak_memory(self) -> int:
        """The cgroup's peak: of this call where it could be reset, else of the container."""
        peak = self._cgroup.peak_memory() if self._cgroup is not None else None
        if peak is None:
            try:
                stats = self._container.stats(stream=False, one_shot=True)
                memory = stats.get("memory_stats") or {}
                peak = int(memory.get("max_usage") or memory.get("usage") or 0)
            except (docker.errors.DockerException, requests.exceptions.RequestException,
                    ValueError, TypeError) as exc:
                log.warning("could not read the memory of %s: %s", self.container_id[:12], exc)
                peak = 0
        return peak

    def _clean_after(self, msg: dict[str, Any]) -> bool:
        """May the container serve another call? Not with processes the call left behind
        (a fork bomb stopped at the pid limit) or a nearly full /tmp: counted by the cgroup
        where it is visible, and by the runner's own report (which can only add reasons)."""
        tmpfs_bytes = self.settings.tmpfs_mb * MiB
        processes = self._cgroup.processes() if self._cgroup is not None else None
        in_tmp = self._cgroup.tmpfs_bytes() if self._cgroup is not None else None
        left = max(processes - self._own_processes if processes is not None else 0,
                   msg.get("processes_left", 0))
        free = [tmpfs_bytes, msg.get("tmp_free_bytes", tmpfs_bytes)]
        if in_tmp is not None:
            free.append(tmpfs_bytes - in_tmp)
        tmp_free = min(f for f in free if f >= 0)
        if left > 0 or tmp_free < tmpfs_bytes * TMP_FREE_MIN:
            log.info("recycling container %s: %d processes left, %d bytes free in /tmp",
                     self.container_id[:12], left, tmp_free)
            return False
        return True

    def _kill(
        self, reason: ExitReason, message: str, started: float, logs: str = ""
    ) -> CallOutcome:
        self.close()
        return CallOutcome(
            reason=reason,
            error=exit_error(reason, message),
            logs=logs,
            run_ms=(time.monotonic() - started) * 1000.0,
            peak_memory_bytes=self.spec.limits.memory_mb * MiB if reason is ExitReason.OOM else 0,
        )

    def _died(self, started: float) -> CallOutcome:
        reason, message = _exit_cause(self._container, self.spec.limits.memory_mb)
        # The runner's own stderr: empty unless the interpreter itself failed.
        return self._kill(reason, f"{message} during the call", started, self._channel.stderr_text)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._channel.close()
        remove_container(self._container)
        self._on_close(self)


class DockerSandbox(Sandbox):
    """Starts sessions on one Docker engine. Thread-safe; the client is made on first use."""

    def __init__(self, settings: SandboxSettings, worker_id: str, client: Any = None,
                 fence: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self._client = client
        # Asked before every networked container (raises EgressNotInstalled); workers pass
        # one, `algohost run` on a laptop does not.
        self._fence = fence
        self._lock = threading.Lock()
        self._live: set[str] = set()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = docker_client(self.settings)
            return self._client

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (AlgohostError, docker.errors.DockerException, requests.exceptions.RequestException):
            return False

    def start(self, spec: ContainerSpec) -> DockerSession:
        started = time.monotonic()
        if spec.limits.network and self._fence is not None:
            self._fence()
        params = container_params(spec, self.settings, self.worker_id)
        with translate_docker_errors(f"creating a container of {spec.image}", ContainerStartFailed):
            try:
                container = self.client.containers.create(spec.image, **params)
            except docker.errors.ImageNotFound as exc:
                raise ImageMissing(f"{spec.image} is not on this Docker engine",
                                   build_id=spec.build_id) from exc
        channel: AttachChannel | None = None
        try:
            with translate_docker_errors("starting the container", ContainerStartFailed):
                channel = AttachChannel(
                    self.client.api.attach_socket(
                        container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1}
                    ),
                    self.settings.max_output_bytes + 8 * self.settings.max_log_bytes + MiB,
                )
                container.start()  # only after attaching, so no early output is missed
            ready = self._handshake(spec, container, channel)
        except BaseException:
            if channel is not None:
                channel.close()
            remove_container(container)
            raise
        session = DockerSession(spec, container, channel, self._forget, self.settings)
        session.cold_start_ms = (time.monotonic() - started) * 1000.0
        session.startup_logs = str(ready.get("logs", ""))
        dropped = ready.get("logs_dropped", 0)
        session.startup_logs_dropped = dropped if isinstance(dropped, int) else 0
        with self._lock:
            self._live.add(session.container_id)
        return session

    def _handshake(
        self, spec: ContainerSpec, container: Any, channel: AttachChannel
    ) -> dict[str, Any]:
        init = {
            "type": protocol.INIT,
            "secrets": dict(spec.secrets),
            "secrets_as_env": spec.secrets_as_env,
            "max_output_bytes": self.settings.max_output_bytes,
            "max_log_bytes": self.settings.max_log_bytes,
            "max_artifacts": self.settings.max_artifacts,
            "max_artifact_bytes": self.settings.max_artifact_bytes,
        }
        try:
            channel.send(protocol.encode(init))
        except OSError:
            pass  # the container is already gone; its exit state says why, below
        deadline = time.monotonic() + self.settings.start_timeout_s
        while True:
            try:
                msg = channel.receive(max(0.0, min(POLL_S, deadline - time.monotonic())))
            except ProtocolViolation as exc:
                raise ContainerStartFailed(str(exc), build_id=spec.build_id) from exc
            if msg is not None and msg["type"] == protocol.READY:
                return msg
            if msg is not None and msg["type"] == protocol.LOAD_ERROR:
                error = (msg.get("error")
                         or exit_error(ExitReason.START_FAILED, "the entrypoint failed"))
                message = f"{error.get('type')}: {error.get('message')}"
                logs, dropped = str(msg.get("logs", "")), msg.get("logs_dropped", 0)
                raise ContainerStartFailed(message, build_id=spec.build_id, error=error, logs=logs,
                                           logs_dropped=dropped if isinstance(dropped, int) else 0)
            if channel.eof:
                reason, message = _exit_cause(container, spec.limits.memory_mb)
                message += " before its runner was ready"
                error, logs = exit_error(reason, message), channel.stderr_text
                raise ContainerStartFailed(message, build_id=spec.build_id, error=error, logs=logs)
            if time.monotonic() >= deadline:
                message = f"the runner was not ready within {self.settings.start_timeout_s:g} s"
                error = exit_error(ExitReason.START_FAILED, message)
                raise ContainerStartFailed(message, build_id=spec.build_id, error=error)

    def _forget(self, session: DockerSession) -> None:
        with self._lock:
            self._live.discard(session.container_id)

    def remove_orphans(self, owner_label: str | None = None) -> int:
        """Remove algohost containers that no live session of this sandbox owns.

        With `owner_label`, only those started by that worker id; without it, every
        algohost container on the engine, other workers' included."""
        labels = [f"{LABEL_MANAGED}=1"]
        if owner_label:
            labels.append(f"{LABEL_WORKER}={owner_label}")
        with translate_docker_errors("listing algohost containers"):
            # Sparse: no inspect per container, which races with removals in progress.
            containers = self.client.containers.list(all=True, filters={"label": labels},
                                                     sparse=True)
        with self._lock:
            live = set(self._live)
        orphans = [c for c in containers if c.id not in live]
        for container in orphans:
            remove_container(container)
        return len(orphans)
