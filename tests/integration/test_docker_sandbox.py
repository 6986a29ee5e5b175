"""The Docker sandbox against the real engine, one tiny algorithm per failure mode.

Each image is built once per run with ImageBuilder and removed at the end, as are
any containers the tests' worker id left behind.
"""

from __future__ import annotations

import errno
import json
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from algohost.config import SandboxSettings, load_settings
from algohost.errors import ContainerStartFailed
from algohost.sandbox.base import ContainerSpec, ExitReason, Limits
from algohost.sandbox.builder import ImageBuilder
from algohost.sandbox.docker import DockerSandbox, DockerSession
from algohost.sandbox.pool import WarmPool

pytestmark = pytest.mark.integration

ALGORITHMS = Path(__file__).resolve().parent.parent / "algorithms"
RUN_ID = uuid.uuid4().hex[:8]


def manifest_of(directory: Path) -> dict[str, Any]:
    data = tomllib.loads((directory / "algorithm.toml").read_text())
    return {
        "name": data["name"],
        "entrypoint": data["entrypoint"],
        "python": data.get("python", "3.11"),
        "build": {"python_packages": [], "requirements": None, "system_packages": []},
        "resources": {
            "timeout_s": 30,
            "memory_mb": 256,
            "cpus": 1.0,
            "network": False,
            **data.get("resources", {}),
        },
        "secrets": {"names": [], "as_env": False, **data.get("secrets", {})},
    }


@pytest.fixture(scope="session")
def settings(docker_client: Any) -> SandboxSettings:
    return replace(load_settings().sandbox, start_timeout_s=30.0)


@pytest.fixture(scope="session")
def image(settings: SandboxSettings, docker_client: Any) -> Iterator[Callable[[str], str]]:
    """Build a test algorithm's image on first use; every one is removed at the end."""
    builder = ImageBuilder(settings, client=docker_client)
    built: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in built:
            directory = ALGORITHMS / name
            tag = f"algohost-test/sandbox-{name}:{RUN_ID}"
            sources = {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}
            logs: list[str] = []
            builder.build(
                f"test-{name}-{RUN_ID}", tag, sources, manifest_of(directory), logs.append
            )
            built[name] = tag
        return built[name]

    yield get
    for tag in built.values():
        builder.remove_image(tag)


@pytest.fixture
def sandbox(settings: SandboxSettings, docker_client: Any) -> Iterator[DockerSandbox]:
    box = DockerSandbox(settings, f"test-{RUN_ID}-{uuid.uuid4().hex[:6]}", client=docker_client)
    yield box
    box.remove_orphans()  # nothing is live any more: whatever is left, the test leaked
    assert not docker_client.containers.list(
        all=True, filters={"label": f"algohost.worker={box.worker_id}"}, sparse=True
    )


@pytest.fixture
def start(
    sandbox: DockerSandbox, image: Callable[[str], str]
) -> Iterator[Callable[..., DockerSession]]:
    sessions: list[DockerSession] = []

    def start(name: str, memory_mb: int = 256, **spec: Any) -> DockerSession:
        limits = Limits(timeout_s=30, memory_mb=memory_mb)
        session = sandbox.start(ContainerSpec(name, image(name), limits=limits, **spec))
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def gone(client: Any, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return True
    return False


def test_hello_round_trip_and_a_second_call_on_the_same_session(start: Any) -> None:
    session = start("hello")
    assert session.cold_start_ms > 0
    first = session.call("world", timeout_s=10)
    assert first.reason is ExitReason.SUCCEEDED and first.output == {"hello": "world"}
    assert first.reusable and first.peak_memory_bytes > 0
    second = session.call({"n": 2}, timeout_s=10)
    assert second.output == {"hello": {"n": 2}} and session.calls == 2 and session.alive


def test_an_exception_is_reported_and_the_container_keeps_serving(start: Any) -> None:
    session = start("hello")
    outcome = session.call({"raise": "nope"}, timeout_s=10)
    assert outcome.reason is ExitReason.EXCEPTION and outcome.reusable
    assert outcome.error is not None and outcome.error["type"] == "ValueError"
    assert outcome.error["message"] == "nope" and "main.py" in outcome.error["traceback"]
    assert session.call(1, timeout_s=10).succeeded


def test_the_container_is_created_hardened(start: Any, docker_client: Any) -> None:
    session = start("hello", memory_mb=128)
    attrs = docker_client.api.inspect_container(session.container_id)
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024 * 1024
    assert host["PidsLimit"] > 0 and host["NanoCpus"] == 1_000_000_000
    assert set(host["Tmpfs"]) == {"/tmp", "/run/secrets"}
    assert host["LogConfig"]["Type"] == "none"
    assert attrs["Config"]["User"] == "65534:65534"
    assert attrs["Config"]["Labels"]["algohost.managed"] == "1"


def test_timeout_kills_the_container_and_reports_timeout(start: Any, docker_client: Any) -> None:
    session = start("sleeper")
    began = time.monotonic()
    outcome = session.call(30, timeout_s=1)
    assert outcome.reason is ExitReason.TIMEOUT and not outcome.reusable
    assert time.monotonic() - began < 5
    assert not session.alive and gone(docker_client, session.container_id)


def test_memory_exhaustion_reports_oom(start: Any, docker_client: Any) -> None:
    session = start("memhog", memory_mb=64)
    outcome = session.call(None, timeout_s=30)
    assert outcome.reason is ExitReason.OOM and not outcome.reusable
    assert outcome.error is not None and "64 MB" in outcome.error["message"]
    assert gone(docker_client, session.container_id)


def test_there_is_no_network_only_loopback(start: Any) -> None:
    outcome = start("netcheck").call(None, timeout_s=10)
    assert outcome.output["interfaces"] == ["lo"]
    assert outcome.output["errno"] == errno.ENETUNREACH


def test_the_root_filesystem_is_read_only_and_tmp_writable(start: Any) -> None:
    assert start("writer").call(None, timeout_s=10).output == {"opt": False, "tmp": True}


def test_a_crash_reports_crashed_with_the_exit_code(start: Any, docker_client: Any) -> None:
    session = start("crasher")
    outcome = session.call(None, timeout_s=10)
    assert outcome.reason is ExitReason.CRASHED and not outcome.reusable
    assert outcome.error is not None and "code 3" in outcome.error["message"]
    assert gone(docker_client, session.container_id)


def test_output_written_to_fds_is_captured_and_the_protocol_survives(start: Any) -> None:
    session = start("printer")
    for n in (1, 2):
        outcome = session.call(n, timeout_s=10)
        assert outcome.output == {"printed": n}
        for text in (
            "print to stdout",
            "print to stderr",
            "raw write to fd 1",
            "raw write to fd 2",
        ):
            assert f"{text} {n}" in outcome.logs
        assert f"stdout {3 - n}" not in outcome.logs


def test_cancel_kills_the_container_and_reports_canceled(start: Any, docker_client: Any) -> None:
    session = start("sleeper")
    began = time.monotonic()
    outcome = session.call(30, timeout_s=60, should_cancel=lambda: time.monotonic() - began > 1)
    assert outcome.reason is ExitReason.CANCELED and not outcome.reusable
    assert time.monotonic() - began < 5
    assert gone(docker_client, session.container_id)


@pytest.mark.parametrize("as_env", [False, True])
def test_secrets_reach_the_algorithm_but_not_docker_inspect(
    start: Any, docker_client: Any, as_env: bool
) -> None:
    session = start("secretreader", secrets={"TOKEN": "s3cr3t-value"}, secrets_as_env=as_env)
    outcome = session.call(None, timeout_s=10)
    assert outcome.output == {"file": "s3cr3t-value", "env": "s3cr3t-value" if as_env else None}
    inspected = json.dumps(docker_client.api.inspect_container(session.container_id))
    assert "s3cr3t-value" not in inspected


def test_output_over_the_limit_is_refused_and_the_container_kept(
    settings: SandboxSettings, image: Callable[[str], str], docker_client: Any
) -> None:
    box = DockerSandbox(
        replace(settings, max_output_bytes=1000), f"test-{RUN_ID}-big", docker_client
    )
    session = box.start(ContainerSpec("hello", image("hello")))
    try:
        outcome = session.call("x" * 2000, timeout_s=10)
        assert outcome.reason is ExitReason.OUTPUT_TOO_LARGE and outcome.reusable
        assert session.call("small", timeout_s=10).succeeded
    finally:
        session.close()


def test_an_import_error_fails_the_start_and_leaves_no_container(
    sandbox: DockerSandbox, image: Callable[[str], str], docker_client: Any
) -> None:
    with pytest.raises(ContainerStartFailed) as caught:
        sandbox.start(ContainerSpec("broken", image("broken")))
    error = caught.value.details["error"]
    assert error["type"] == "RuntimeError" and "fails at import" in error["message"]
    assert "main.py" in error["traceback"] and "about to fail" in caught.value.details["logs"]
    labels = {"label": f"algohost.worker={sandbox.worker_id}"}
    assert docker_client.containers.list(all=True, filters=labels, sparse=True) == []


def test_a_missing_image_fails_the_start(sandbox: DockerSandbox) -> None:
    with pytest.raises(ContainerStartFailed, match="does-not-exist"):
        sandbox.start(ContainerSpec("x", f"algohost-test/does-not-exist:{RUN_ID}"))


def test_remove_orphans_removes_only_the_named_workers_containers(
    start: Any, sandbox: DockerSandbox, settings: SandboxSettings, docker_client: Any
) -> None:
    mine = start("hello")
    other = DockerSandbox(settings, f"test-{RUN_ID}-other", client=docker_client)
    assert other.remove_orphans(f"test-{RUN_ID}-nobody") == 0
    assert sandbox.remove_orphans(sandbox.worker_id) == 0  # its own live session is kept
    assert other.remove_orphans(sandbox.worker_id) == 1
    assert gone(docker_client, mine.container_id)
    deadline = time.monotonic() + 5
    while mine.alive:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_ping_answers_for_a_live_engine_and_not_for_a_dead_one(
    sandbox: DockerSandbox, settings: SandboxSettings
) -> None:
    assert sandbox.ping()
    dead = DockerSandbox(replace(settings, docker_url="unix:///nonexistent/docker.sock"), "x")
    assert not dead.ping()


def test_the_warm_pool_reuses_a_real_container(
    sandbox: DockerSandbox, settings: SandboxSettings, image: Callable[[str], str]
) -> None:
    pool = WarmPool(sandbox, settings)
    spec = ContainerSpec("hello", image("hello"))
    try:
        cold, warm = pool.acquire(spec)
        assert not warm and cold.call(1, timeout_s=10).succeeded
        pool.release(cold, reusable=True)
        again, warm = pool.acquire(spec)
        assert warm and again.container_id == cold.container_id
        assert again.call(2, timeout_s=10).output == {"hello": 2}
        pool.release(again, reusable=True)
    finally:
        pool.shutdown()
    assert not again.alive
