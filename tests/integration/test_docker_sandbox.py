"""What only the Docker sandbox does, against the real engine: hardening, isolation,
captured output, secrets kept out of inspect, orphans. What it shares with the stub is
held by test_sandbox_contract.py.

Each image is built once per run with ImageBuilder and removed at the end, as are
any containers the tests' worker id left behind.
"""

from __future__ import annotations

import errno
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import docker.errors
import pytest

from algohost.config import SandboxSettings
from algohost.errors import ContainerStartFailed
from algohost.sandbox.base import ContainerSpec, ExitReason, Limits
from algohost.sandbox.docker import DockerSandbox, DockerSession
from algohost.sandbox.pool import WarmPool
from tests.waiting import eventually

pytestmark = pytest.mark.integration

RUN_ID = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def settings(sandbox_settings: SandboxSettings) -> SandboxSettings:
    return sandbox_settings


@pytest.fixture(scope="session")
def image(algorithm_image: Callable[[str], str]) -> Callable[[str], str]:
    return algorithm_image


@pytest.fixture
def sandbox(settings: SandboxSettings, docker_client: Any) -> Iterator[DockerSandbox]:
    box = DockerSandbox(settings, f"test-{RUN_ID}-{uuid.uuid4().hex[:6]}", client=docker_client)
    yield box
    # Nothing of this worker id is live any more: whatever is left, the test leaked. Other
    # workers' containers on the engine (other test runs) are not this test's to remove.
    box.remove_orphans(box.worker_id)
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


def test_the_container_is_created_hardened(start: Any, docker_client: Any) -> None:
    session = start("hello", memory_mb=128)
    attrs = docker_client.api.inspect_container(session.container_id)
    host = attrs["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"] and host["NetworkMode"] == "none"
    assert host["Memory"] == host["MemorySwap"] == 128 * 1024 * 1024
    assert host["PidsLimit"] > 0 and host["NanoCpus"] == 1_000_000_000
    assert set(host["Tmpfs"]) == {"/tmp", "/run/secrets", "/outputs"}
    assert host["LogConfig"]["Type"] == "none"
    assert attrs["Config"]["User"] == "65534:65534"
    assert attrs["Config"]["Labels"]["algohost.managed"] == "1"


def test_there_is_no_network_only_loopback(start: Any) -> None:
    outcome = start("netcheck").call(None, timeout_s=10)
    assert outcome.output["interfaces"] == ["lo"]
    assert outcome.output["errno"] == errno.ENETUNREACH


def test_the_root_filesystem_is_read_only_and_tmp_writable(start: Any) -> None:
    assert start("writer").call(None, timeout_s=10).output == {"opt": False, "tmp": True}


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


@pytest.mark.parametrize("as_env", [False, True])
def test_secrets_reach_the_algorithm_but_not_docker_inspect(
    start: Any, docker_client: Any, as_env: bool
) -> None:
    session = start("secretreader", secrets={"TOKEN": "s3cr3t-value"}, secrets_as_env=as_env)
    outcome = session.call(None, timeout_s=10)
    assert outcome.output == {"file": "s3cr3t-value", "env": "s3cr3t-value" if as_env else None}
    inspected = json.dumps(docker_client.api.inspect_container(session.container_id))
    assert "s3cr3t-value" not in inspected


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


def test_remove_orphans_removes_only_the_named_workers_containers(
    start: Any, sandbox: DockerSandbox, settings: SandboxSettings, docker_client: Any
) -> None:
    mine = start("hello")
    other = DockerSandbox(settings, f"test-{RUN_ID}-other", client=docker_client)
    assert other.remove_orphans(f"test-{RUN_ID}-nobody") == 0
    assert sandbox.remove_orphans(sandbox.worker_id) == 0  # its own live session is kept
    assert other.remove_orphans(sandbox.worker_id) == 1
    assert gone(docker_client, mine.container_id)
    eventually(lambda: not mine.alive, 5, "the session to see its container gone")


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


# A hostile or careless algorithm (tests/algorithms/hostile) --------------------------

def test_an_algorithm_printing_200_mb_succeeds_with_the_tail_of_its_logs(start: Any) -> None:
    # Capture used to live in a file on the algorithm's 64 MB /tmp: ENOSPC failed the call.
    session = start("hostile")
    outcome = session.call({"do": "chatty", "mb": 200}, timeout_s=300)
    assert outcome.reason is ExitReason.SUCCEEDED and outcome.output == "printed"
    assert outcome.logs.endswith("the last line\n")
    assert outcome.logs_dropped >= (200 << 20) - len(outcome.logs)
    assert outcome.reusable and session.call({"do": "deep", "levels": 1}, timeout_s=30).succeeded


def test_a_full_tmp_keeps_logging_and_the_container_is_recycled(start: Any) -> None:
    session = start("hostile")
    outcome = session.call({"do": "fill_tmp"}, timeout_s=60)
    assert outcome.reason is ExitReason.SUCCEEDED and "still logging" in outcome.logs
    assert not outcome.reusable


def test_a_call_that_leaves_processes_behind_is_not_reused(
    sandbox: DockerSandbox, settings: SandboxSettings, image: Callable[[str], str]
) -> None:
    pool = WarmPool(sandbox, settings)
    spec = ContainerSpec("hostile", image("hostile"))
    try:
        bombed, _ = pool.acquire(spec)
        outcome = bombed.call({"do": "fork_bomb"}, timeout_s=60)
        assert outcome.succeeded and 0 < outcome.output["forked"] < settings.pids_limit
        assert not outcome.reusable
        pool.release(bombed, outcome.reusable)
        fresh, warm = pool.acquire(spec)
        assert not warm and fresh.container_id != bombed.container_id
        pool.release(fresh, True)
    finally:
        pool.shutdown()


def test_a_forged_frame_ends_the_container_with_a_clear_error_and_no_echo(
    start: Any, docker_client: Any, caplog: Any
) -> None:
    session = start("hostile")
    outcome = session.call({"do": "forge", "secret": "forged-s3cr3t"}, timeout_s=60)
    assert outcome.reason is ExitReason.CRASHED and not outcome.reusable
    assert outcome.error is not None and "not a protocol message" in outcome.error["message"]
    assert "forged-s3cr3t" not in json.dumps(outcome.error) + caplog.text
    assert gone(docker_client, session.container_id)


def test_peak_memory_and_run_time_are_measured_outside_the_container(start: Any) -> None:
    session = start("hostile", memory_mb=512)
    small = session.call({"do": "allocate", "mb": 1}, timeout_s=60)
    big = session.call({"do": "allocate", "mb": 200}, timeout_s=60)
    assert big.succeeded and big.peak_memory_bytes >= 200 << 20
    assert small.peak_memory_bytes < big.peak_memory_bytes and big.run_ms > 0


def test_an_output_nested_past_the_limit_is_refused_and_the_container_kept(start: Any) -> None:
    session = start("hostile")
    outcome = session.call({"do": "deep", "levels": 300}, timeout_s=30)
    assert outcome.reason is ExitReason.OUTPUT_TOO_LARGE and outcome.output is None
    assert outcome.error is not None and outcome.error["type"] == "OutputTooDeep"
    assert outcome.reusable


def test_a_container_stopped_from_outside_mid_call_is_a_lost_sandbox(
    start: Any, docker_client: Any
) -> None:
    # What a dockerd restart does to every container: stopped from outside, mid-call.
    session = start("sleeper")
    outcomes: list[Any] = []
    caller = threading.Thread(target=lambda: outcomes.append(session.call(30, timeout_s=60)))
    caller.start()
    docker_client.containers.get(session.container_id).stop(timeout=1)
    caller.join(60)
    [outcome] = outcomes
    assert outcome.reason is ExitReason.SANDBOX_LOST and not outcome.reusable
    assert outcome.error is not None and outcome.error["type"] == "SandboxLost"
    assert "stopped from outside" in outcome.error["message"]


def test_every_request_to_the_engine_shares_one_connection_pool():
    """docker-py keys pools by URL and closes the least recent of 25 even while another
    thread uses it; many container URLs in parallel must not break a request."""
    from concurrent.futures import ThreadPoolExecutor

    from algohost.config import load_settings
    from algohost.sandbox.docker import docker_client

    client = docker_client(load_settings({}).sandbox)
    adapter = client.api._custom_adapter
    paths = [f"/v1.41/containers/nope{n}/json" for n in range(200)]
    before = len(adapter.pools)  # the client's own version check, made before sharing

    def inspect(path):
        return client.api._get(client.api.base_url + path).status_code

    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(inspect, paths)) == {404}
    assert len(adapter.pools) <= before + 1  # one pool for the socket, not one per URL
    client.close()
