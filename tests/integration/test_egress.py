"""The calls and builds networks and their firewall, against the real engine and iptables.

Test traffic goes only to the project's own containers and to a listener this test
starts on the host side of the project's own bridge. That metadata, LAN and public
addresses are fenced as intended is read from the installed rule set, never probed.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed
from algohost.sandbox.base import ContainerSpec, Limits
from algohost.sandbox.builder import ImageBuilder
from algohost.sandbox.buildplan import Step
from algohost.sandbox.docker import DockerSandbox, DockerSession
from algohost.sandbox.egress import (
    BLOCKED,
    EGRESS_CHAIN,
    HOST_CHAIN,
    host_subnets,
    install_rules,
)

pytestmark = pytest.mark.integration

RUN_ID = uuid.uuid4().hex[:8]
CHAINS = ("DOCKER-USER", "INPUT", EGRESS_CHAIN, HOST_CHAIN)


def iptables_s(chain: str) -> list[str]:
    done = subprocess.run(["iptables", "-S", chain], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def first_match(chain: str, address: str) -> str:
    """The target of the first rule of `chain` whose destination holds `address` and that
    has no protocol condition: how the kernel judges a new TCP connection to it."""
    for rule in iptables_s(chain):
        words = rule.split()
        if words[0] != "-A" or "-p" in words or "--ctstate" in words:
            continue
        destination = words[words.index("-d") + 1] if "-d" in words else "0.0.0.0/0"
        if ipaddress.ip_address(address) in ipaddress.ip_network(destination):
            return words[words.index("-j") + 1]
    return "fall through (allowed)"


@pytest.fixture(scope="session")
def settings(sandbox_settings: SandboxSettings) -> SandboxSettings:
    return sandbox_settings


def test_the_jumps_come_first_for_both_bridges_and_nothing_else_is_touched(
        settings: SandboxSettings) -> None:
    docker_user = iptables_s("DOCKER-USER")
    for bridge in (settings.calls_network, settings.builds_network):
        jump = f"-A DOCKER-USER -i {bridge} -j {EGRESS_CHAIN}"
        assert docker_user.index(jump) < docker_user.index("-A DOCKER-USER -j RETURN")
        assert f"-A INPUT -i {bridge} -j {HOST_CHAIN}" in iptables_s("INPUT")
    # Every algohost rule names one of algohost's bridges: docker0 and others pass as before.
    ours = [r for r in docker_user + iptables_s("INPUT") if "ALGOHOST" in r]
    assert all(f"-i {settings.calls_network} " in r or f"-i {settings.builds_network} " in r
               for r in ours)


@pytest.mark.parametrize("address", ["169.254.169.254", "100.100.100.200", "10.1.2.3",
                                     "172.17.0.1", "192.168.1.1", "127.0.0.1", "0.0.0.0"])
def test_metadata_private_and_loopback_addresses_are_rejected_by_the_rules(
        address: str) -> None:
    assert first_match(EGRESS_CHAIN, address) == "REJECT"


def test_the_hosts_own_lan_is_rejected_and_a_public_address_is_not() -> None:
    for subnet in host_subnets():
        assert first_match(EGRESS_CHAIN, str(subnet.network_address + 1)) == "REJECT"
    assert first_match(EGRESS_CHAIN, "8.8.8.8") == "fall through (allowed)"
    assert len([r for r in iptables_s(EGRESS_CHAIN) if "REJECT" in r]) >= len(BLOCKED)


def test_everything_addressed_to_the_host_is_rejected_but_replies() -> None:
    host = iptables_s(HOST_CHAIN)
    assert "--ctstate RELATED,ESTABLISHED" in host[1] and host[1].endswith("-j RETURN")
    assert host[-1].endswith("-j REJECT --reject-with icmp-admin-prohibited")
    assert " -d " not in host[-1]


def test_installing_again_changes_no_rule(settings: SandboxSettings) -> None:
    before = {chain: iptables_s(chain) for chain in CHAINS}
    install_rules(settings)
    assert {chain: iptables_s(chain) for chain in CHAINS} == before


@pytest.fixture(scope="session")
def netprobe(algorithm_image: Callable[[str], str]) -> str:
    return algorithm_image("netprobe")


@pytest.fixture
def probes(settings: SandboxSettings, netprobe: str) -> Iterator[Callable[[], DockerSession]]:
    sandbox = DockerSandbox(settings, f"test-egress-{RUN_ID}-{uuid.uuid4().hex[:6]}")
    sessions: list[DockerSession] = []

    def start() -> DockerSession:
        limits = Limits(timeout_s=30, memory_mb=128, network=True)
        session = sandbox.start(ContainerSpec("b_netprobe", netprobe, limits=limits))
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()
    sandbox.remove_orphans(sandbox.worker_id)


def call(session: DockerSession, request: dict[str, Any]) -> dict[str, Any]:
    outcome = session.call(request, timeout_s=30)
    assert outcome.error is None, outcome.error
    return dict(outcome.output)


def connect_from_host(address: str, port: int) -> bytes:
    with socket.create_connection((address, port), timeout=10) as conn:
        return conn.recv(100)


def test_a_networked_call_joins_only_the_calls_network(
        probes: Callable[[], DockerSession], settings: SandboxSettings,
        docker_client: Any) -> None:
    session = probes()
    container = docker_client.containers.get(session.container_id)
    assert set(container.attrs["NetworkSettings"]["Networks"]) == {settings.calls_network}


def test_one_call_container_cannot_reach_another(
        probes: Callable[[], DockerSession]) -> None:
    listener, prober = probes(), probes()
    where = call(listener, {"listen": 8080})
    # The listener is up and reachable from the host: a refusal below is the fence.
    assert connect_from_host(where["address"], 8080) == b"hello from the listener\n"
    tried = call(prober, {"host": where["address"], "port": 8080})
    assert tried["connected"] is False and tried["errno"] == errno.EHOSTUNREACH


def reject_count(chain: str) -> int:
    done = subprocess.run(["iptables", "-L", chain, "-v", "-x", "-n"], capture_output=True,
                          text=True, check=True)
    return sum(int(line.split()[0]) for line in done.stdout.splitlines()[2:]
               if "REJECT" in line)


@pytest.fixture
def host_listener(settings: SandboxSettings, docker_client: Any
                  ) -> Iterator[Callable[[str], tuple[str, int, socket.socket]]]:
    """A TCP listener on the host side of one of the project's bridges."""
    listeners: list[socket.socket] = []

    def listen(network: str) -> tuple[str, int, socket.socket]:
        attrs = docker_client.networks.get(network).attrs
        gateway = attrs["IPAM"]["Config"][0]["Gateway"]
        sock = socket.socket()
        sock.bind((gateway, 0))
        sock.listen()
        sock.setblocking(False)
        listeners.append(sock)
        return gateway, sock.getsockname()[1], sock

    yield listen
    for sock in listeners:
        sock.close()


def nothing_accepted(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def test_a_call_container_cannot_reach_the_host_side_of_its_bridge(
        probes: Callable[[], DockerSession], settings: SandboxSettings,
        host_listener: Callable[[str], tuple[str, int, socket.socket]]) -> None:
    gateway, port, sock = host_listener(settings.calls_network)
    rejected = reject_count(HOST_CHAIN)
    tried = call(probes(), {"host": gateway, "port": port})
    assert tried["connected"] is False and tried["errno"] == errno.EHOSTUNREACH
    assert nothing_accepted(sock)
    assert reject_count(HOST_CHAIN) > rejected  # it was the host chain that said no


CONNECT = r"""
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10).close()
    print("connected")
except OSError as exc:
    print("errno", exc.errno)
"""


def test_a_build_step_cannot_reach_the_host_side_of_its_bridge(
        settings: SandboxSettings, docker_client: Any,
        host_listener: Callable[[str], tuple[str, int, socket.socket]]) -> None:
    gateway, port, sock = host_listener(settings.builds_network)
    builder = ImageBuilder(settings)
    base = builder.client.images.get(settings.base_image).id
    logs: list[str] = []
    step = Step("connect", ("python3", "-c", CONNECT, gateway, str(port)))
    labels = {"algohost.managed": "1", "algohost.build": f"b_egress_{RUN_ID}"}
    try:
        image = builder.run_step(base, step, f"egress{uuid.uuid4().hex[:8]}", labels,
                                 time.monotonic() + 120, logs.append)
    except BuildFailed as exc:
        pytest.fail(f"the probe step failed: {exc.message}: {logs}")
    for tag in builder.client.images.get(image).tags:
        builder.client.images.remove(tag)
    assert logs == [f"errno {errno.EHOSTUNREACH}"]
    assert nothing_accepted(sock)
