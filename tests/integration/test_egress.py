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
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from algohost.config import SandboxSettings
from algohost.errors import BuildFailed, EgressNotInstalled
from algohost.sandbox.base import ContainerSpec, Limits
from algohost.sandbox.builder import ImageBuilder
from algohost.sandbox.buildplan import Step
from algohost.sandbox.docker import NO_IPV6, DockerSandbox, DockerSession
from algohost.sandbox.egress import (
    BLOCKED,
    EGRESS_CHAIN,
    HOST_CHAIN,
    PROC_IPV6,
    ensure_networks,
    host_subnets,
    install_rules,
    ipv6_forward_chain,
    jumps,
    run_command,
)
from algohost.sandbox.fence import Fence, fence_gaps
from algohost.sandbox.nameservers import allowed_resolvers

pytestmark = pytest.mark.integration

RUN_ID = uuid.uuid4().hex[:8]
CHAINS = ("DOCKER-USER", "INPUT", EGRESS_CHAIN, HOST_CHAIN)


def iptables_s(chain: str, command: str = "iptables") -> list[str]:
    done = subprocess.run([command, "-S", chain], capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def first_match(chain: str, address: str, protocol: str = "", port: int = 0) -> str:
    """The target of the first rule of `chain` that a new connection to `address` (over
    `protocol` to `port`; without them, TCP to a port no rule names) meets."""
    for rule in iptables_s(chain):
        words = rule.split()
        if words[0] != "-A" or "--ctstate" in words:
            continue
        if "-p" in words and (words[words.index("-p") + 1] != protocol
                              or words[words.index("--dport") + 1] != str(port)):
            continue
        destination = words[words.index("-d") + 1] if "-d" in words else "0.0.0.0/0"
        if ipaddress.ip_address(address) in ipaddress.ip_network(destination):
            return words[words.index("-j") + 1]
    return "fall through (allowed)"


@pytest.fixture(scope="session")
def settings(sandbox_settings: SandboxSettings, docker_client: Any) -> SandboxSettings:
    """The sandbox settings, with this code's networks and rules installed (as `dev up`
    and a worker started as root would)."""
    ensure_networks(docker_client, sandbox_settings)
    install_rules(sandbox_settings)
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
        settings: SandboxSettings, address: str) -> None:
    assert first_match(EGRESS_CHAIN, address) == "REJECT"


def test_the_hosts_own_lan_is_rejected_and_a_public_address_is_not(
        settings: SandboxSettings) -> None:
    for subnet in host_subnets():
        assert first_match(EGRESS_CHAIN, str(subnet.network_address + 1)) == "REJECT"
    assert first_match(EGRESS_CHAIN, "8.8.8.8") == "fall through (allowed)"
    assert len([r for r in iptables_s(EGRESS_CHAIN) if "REJECT" in r]) >= len(BLOCKED)


def test_everything_addressed_to_the_host_is_rejected_but_replies(
        settings: SandboxSettings) -> None:
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


def reject_count(chain: str, why: str = "") -> int:
    """Packets the REJECT rules of `chain` (those whose comment holds `why`) have met."""
    done = subprocess.run(["iptables", "-L", chain, "-v", "-x", "-n"], capture_output=True,
                          text=True, check=True)
    return sum(int(line.split()[0]) for line in done.stdout.splitlines()[2:]
               if "REJECT" in line and why in line)


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


def run_probe_step(builder: ImageBuilder, settings: SandboxSettings, *argv: str) -> list[str]:
    """The log lines of one build step running `argv` in the build cage."""
    base = builder.client.images.get(settings.base_image).id
    logs: list[str] = []
    labels = {"algohost.managed": "1", "algohost.build": f"b_egress_{RUN_ID}"}
    try:
        image = builder.run_step(base, Step("probe", argv), f"egress{uuid.uuid4().hex[:8]}",
                                 labels, time.monotonic() + 120, logs.append)
    except BuildFailed as exc:
        pytest.fail(f"the probe step failed: {exc.message}: {logs}")
    for tag in builder.client.images.get(image).tags:
        builder.client.images.remove(tag)
    return logs


def test_a_build_step_cannot_reach_the_host_side_of_its_bridge(
        settings: SandboxSettings, docker_client: Any,
        host_listener: Callable[[str], tuple[str, int, socket.socket]]) -> None:
    gateway, port, sock = host_listener(settings.builds_network)
    logs = run_probe_step(ImageBuilder(settings), settings,
                          "python3", "-c", CONNECT, gateway, str(port))
    assert logs == [f"errno {errno.EHOSTUNREACH}"]
    assert nothing_accepted(sock)


# IPv6: ICC and the IPv4 rules would not stop it, so tenants get none at all.

def link_local(mac: str) -> str:
    """The link-local address (EUI-64) an interface with this MAC takes when IPv6 is on."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    groups = (f"{eui[i]:02x}{eui[i + 1]:02x}" for i in range(0, 8, 2))
    return str(ipaddress.IPv6Address("fe80::" + ":".join(groups)))


def test_a_networked_call_container_has_no_ipv6_at_all(
        probes: Callable[[], DockerSession], docker_client: Any) -> None:
    session = probes()
    report = call(session, {"inet6": True})
    assert report["addresses"] == []  # neither global nor link-local, nor even ::1
    if PROC_IPV6.is_dir():
        assert report["disable_ipv6"] and set(report["disable_ipv6"].values()) == {"1"}
    sysctls = docker_client.containers.get(session.container_id).attrs["HostConfig"]["Sysctls"]
    assert sysctls == NO_IPV6


def test_a_call_container_reaches_neither_another_nor_its_bridge_over_ipv6(
        probes: Callable[[], DockerSession], settings: SandboxSettings,
        docker_client: Any) -> None:
    listener, prober = probes(), probes()
    call(listener, {"listen": 8080})
    attrs = docker_client.containers.get(listener.container_id).attrs
    other = attrs["NetworkSettings"]["Networks"][settings.calls_network]["MacAddress"]
    bridge = Path(f"/sys/class/net/{settings.calls_network}/address").read_text().strip()
    # The addresses each would hold with IPv6 on: the prober has no address to send from.
    for target, port in ((link_local(other), 8080), (link_local(bridge), 8000)):
        tried = call(prober, {"host": f"{target}%eth0", "port": port})
        assert tried["connected"] is False and tried["errno"] == errno.EADDRNOTAVAIL, target


def test_a_build_step_has_no_ipv6_at_all(settings: SandboxSettings) -> None:
    report = ("import os; print(repr(open('/proc/net/if_inet6').read()), "
              "open('/proc/sys/net/ipv6/conf/all/disable_ipv6').read().strip())")
    if not PROC_IPV6.is_dir():
        pytest.skip("this kernel has no IPv6")
    assert run_probe_step(ImageBuilder(settings), settings, "python3", "-c", report) == ["'' 1"]


def test_the_bridges_have_no_ipv6_and_ip6tables_rejects_whatever_comes_from_them(
        settings: SandboxSettings) -> None:
    if not PROC_IPV6.is_dir():
        pytest.skip("this kernel has no IPv6: there is nothing to fence")
    forward = ipv6_forward_chain(run_command)
    forward_rules, input_rules = iptables_s(forward, "ip6tables"), iptables_s("INPUT", "ip6tables")
    for bridge in (settings.calls_network, settings.builds_network):
        assert (PROC_IPV6 / "conf" / bridge / "disable_ipv6").read_text().strip() == "1"
        shown = subprocess.run(["ip", "-6", "addr", "show", "dev", bridge], capture_output=True,
                               text=True, check=True).stdout
        assert "inet6" not in shown
        jump = forward_rules.index(f"-A {forward} -i {bridge} -j {EGRESS_CHAIN}")
        assert all("-j ACCEPT" not in rule for rule in forward_rules[:jump])
        assert f"-A INPUT -i {bridge} -j {HOST_CHAIN}" in input_rules
    for chain in (EGRESS_CHAIN, HOST_CHAIN):
        rules = [rule for rule in iptables_s(chain, "ip6tables") if rule.startswith("-A ")]
        assert len(rules) == 1 and " -d " not in rules[0] and " -p " not in rules[0]
        assert rules[0].endswith("-j REJECT --reject-with icmp6-adm-prohibited")


# DNS: the allowed name servers, and no other.

def test_a_networked_container_is_given_only_the_allowed_name_servers(
        probes: Callable[[], DockerSession], settings: SandboxSettings,
        docker_client: Any) -> None:
    attrs = docker_client.containers.get(probes().container_id).attrs
    assert (attrs["HostConfig"]["Dns"] or []) == [str(s) for s in allowed_resolvers(settings)]


def test_port_53_is_open_to_the_allowed_name_servers_and_rejected_to_any_other(
        settings: SandboxSettings) -> None:
    for server in allowed_resolvers(settings):
        for protocol in ("udp", "tcp"):
            assert first_match(EGRESS_CHAIN, str(server), protocol, 53) == "RETURN"
    # Read from the rules, never sent: a public name server, and another port of it.
    assert first_match(EGRESS_CHAIN, "8.8.8.8", "udp", 53) == "REJECT"
    assert first_match(EGRESS_CHAIN, "8.8.8.8", "tcp", 53) == "REJECT"
    assert first_match(EGRESS_CHAIN, "8.8.8.8", "tcp", 443) == "fall through (allowed)"


def test_port_53_of_a_server_not_allowed_meets_the_name_server_rule(
        probes: Callable[[], DockerSession]) -> None:
    listener, prober = probes(), probes()
    where = call(listener, {"listen": 8080})
    rejected = reject_count(EGRESS_CHAIN, "a name server not in")
    tried = call(prober, {"host": where["address"], "port": 53})
    assert tried["connected"] is False and tried["errno"] == errno.EHOSTUNREACH
    assert reject_count(EGRESS_CHAIN, "a name server not in") > rejected


# After a reboot: networks the engine keeps, rules the kernel lost. Spare networks of
# this test's own, so the fence of the real ones never opens.

@pytest.fixture
def rebooted(settings: SandboxSettings, docker_client: Any) -> Iterator[SandboxSettings]:
    spare = replace(settings, calls_network=f"aht{RUN_ID[:6]}c",
                    builds_network=f"aht{RUN_ID[:6]}b")
    ensure_networks(docker_client, spare)
    yield spare
    families = [("iptables", jumps(spare))]
    if PROC_IPV6.is_dir():
        families.append(("ip6tables", jumps(spare, ipv6_forward_chain(run_command))))
    for command, rules in families:
        for rule in rules:
            while run_command([command, "-D", *rule]).returncode == 0:
                pass
    for name in (spare.calls_network, spare.builds_network):
        docker_client.networks.get(name).remove()


def networked(image: str) -> ContainerSpec:
    return ContainerSpec("b_netprobe", image, limits=Limits(timeout_s=30, memory_mb=128,
                                                            network=True))


def test_a_worker_that_may_not_install_the_fence_starts_no_networked_container(
        rebooted: SandboxSettings, netprobe: str, docker_client: Any) -> None:
    worker = f"test-egress-{RUN_ID}-fence"
    fence = Fence(rebooted, may_install=False)
    sandbox = DockerSandbox(rebooted, worker, fence=fence)
    with pytest.raises(EgressNotInstalled, match="algohost egress install") as caught:
        sandbox.start(networked(netprobe))
    assert f"no `DOCKER-USER -i {rebooted.calls_network} -j {EGRESS_CHAIN}`" in caught.value.message
    assert docker_client.containers.list(
        all=True, filters={"label": f"algohost.worker={worker}"}, sparse=True) == []
    with pytest.raises(EgressNotInstalled):
        ImageBuilder(rebooted, fence=fence).run_step(
            "unused", Step("probe", ("true",)), "unused", {"algohost.build": "b_x"},
            time.monotonic() + 60, lambda line: None)
    # A call without network is not held back.
    sandbox.start(ContainerSpec("b_netprobe", netprobe, limits=Limits(timeout_s=30))).close()


def test_a_root_worker_puts_the_fence_back_before_its_first_networked_container(
        rebooted: SandboxSettings, netprobe: str, docker_client: Any) -> None:
    assert fence_gaps(rebooted)
    sandbox = DockerSandbox(rebooted, f"test-egress-{RUN_ID}-root",
                            fence=Fence(rebooted, may_install=True))
    session = sandbox.start(networked(netprobe))
    try:
        assert fence_gaps(rebooted) == []
        docker_user = iptables_s("DOCKER-USER")
        assert docker_user.index(f"-A DOCKER-USER -i {rebooted.calls_network} -j "
                                 f"{EGRESS_CHAIN}") < docker_user.index("-A DOCKER-USER -j RETURN")
        attrs = docker_client.containers.get(session.container_id).attrs
        assert set(attrs["NetworkSettings"]["Networks"]) == {rebooted.calls_network}
    finally:
        session.close()
