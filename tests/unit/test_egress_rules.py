"""The egress rule set and the network settings, without a firewall or an engine."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from algohost.config import SandboxSettings, load_settings
from algohost.errors import SandboxError
from algohost.sandbox.base import ContainerSpec, Limits
from algohost.sandbox.docker import container_params
from algohost.sandbox.egress import (
    BLOCKED,
    EGRESS_CHAIN,
    HOST_CHAIN,
    host_resolvers,
    install_rules,
    jumps,
    restore_script,
)

RESOLVER = ipaddress.IPv4Address("10.255.255.53")
LAN = ipaddress.IPv4Network("192.0.2.0/24")


def rules(settings: SandboxSettings, chain: str) -> list[str]:
    script = restore_script(settings, [RESOLVER], [LAN, ipaddress.IPv4Network("172.18.0.0/16")])
    return [line for line in script.splitlines() if line.startswith(f"-A {chain} ")]


def test_every_private_link_local_loopback_and_metadata_range_is_rejected() -> None:
    rejected = [line.split()[3] for line in rules(SandboxSettings(), EGRESS_CHAIN)
                if "REJECT" in line]
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                 "127.0.0.0/8", "0.0.0.0/8", "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4"):
        assert cidr in rejected
    metadata = [ipaddress.IPv4Address(a) for a in ("169.254.169.254", "100.100.100.200")]
    assert all(any(a in ipaddress.IPv4Network(c) for c in rejected) for a in metadata)
    assert "192.0.2.0/24" in rejected  # the host's LAN, whatever its range
    assert "172.18.0.0/16" not in rejected  # already inside 172.16.0.0/12


def test_allowed_cidrs_and_the_name_server_come_before_any_reject() -> None:
    settings = SandboxSettings(egress_allow="10.1.2.0/24, 192.168.5.7/32")
    egress = rules(settings, EGRESS_CHAIN)
    first_reject = next(i for i, line in enumerate(egress) if "REJECT" in line)
    allowed = egress[:first_reject]
    assert [line.split()[3] for line in allowed] == ["10.1.2.0/24", "192.168.5.7/32",
                                                     "10.255.255.53/32", "10.255.255.53/32"]
    assert all("--dport 53" in line for line in allowed[2:])
    assert all("-j RETURN" in line for line in allowed)


def test_the_host_chain_lets_replies_and_allowed_cidrs_through_and_rejects_the_rest() -> None:
    host = rules(SandboxSettings(egress_allow="10.1.2.0/24"), HOST_CHAIN)
    assert "--ctstate RELATED,ESTABLISHED" in host[0] and host[0].endswith("-j RETURN")
    assert "-d 10.1.2.0/24" in host[1]
    assert host[-1].endswith("REJECT --reject-with icmp-admin-prohibited")
    assert "-d " not in host[-1] and "-p " not in host[-1]


def test_the_jumps_cover_both_bridges_in_forward_and_input() -> None:
    assert sorted(map(tuple, jumps(SandboxSettings()))) == [
        ("DOCKER-USER", "-i", "algohost-builds", "-j", EGRESS_CHAIN),
        ("DOCKER-USER", "-i", "algohost-calls", "-j", EGRESS_CHAIN),
        ("INPUT", "-i", "algohost-builds", "-j", HOST_CHAIN),
        ("INPUT", "-i", "algohost-calls", "-j", HOST_CHAIN),
    ]


class FakeIptables:
    """Just enough of iptables to check what install_rules asks of it."""

    def __init__(self, docker_user: bool = True) -> None:
        self.chains: dict[str, list[list[str]]] = {"INPUT": [], "DOCKER-USER": [["-j", "RETURN"]]}
        if not docker_user:
            del self.chains["DOCKER-USER"]
        self.restored: list[str] = []

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        ok, fail = (subprocess.CompletedProcess(argv, code, "", "") for code in (0, 1))
        if argv[0] == "ip":
            return subprocess.CompletedProcess(argv, 0, '[{"ifname": "eth0", "addr_info": '
                                               '[{"local": "192.0.2.2", "prefixlen": 24}]}]', "")
        if argv[0] == "iptables-restore":
            self.restored.append(stdin)
            return ok
        if argv[1:3] == ["-n", "-L"]:
            return ok if argv[3] in self.chains else fail
        chain, spec = argv[2], argv[3:]
        if argv[1] == "-C":
            return ok if spec in self.chains[chain] else fail
        if argv[1] == "-I":
            self.chains[chain].insert(int(spec[0]) - 1, spec[1:])
            return ok
        raise AssertionError(f"unexpected {argv}")


def test_installing_twice_leaves_one_jump_each_before_docker_users_return() -> None:
    iptables = FakeIptables()
    for _ in range(2):
        install_rules(SandboxSettings(), run=iptables, resolvers=[RESOLVER])
    docker_user = iptables.chains["DOCKER-USER"]
    assert docker_user[-1] == ["-j", "RETURN"] and len(docker_user) == 3
    assert len(iptables.chains["INPUT"]) == 2
    assert iptables.restored[0] == iptables.restored[1]
    assert "-d 192.0.2.0/24" in iptables.restored[0]


def test_without_dockers_chain_nothing_is_installed() -> None:
    iptables = FakeIptables(docker_user=False)
    with pytest.raises(SandboxError, match="DOCKER-USER"):
        install_rules(SandboxSettings(), run=iptables, resolvers=[])
    assert not iptables.restored


def test_name_servers_are_read_from_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.255.255.53\nnameserver fd00::1\nsearch x\n")
    assert host_resolvers(conf) == [RESOLVER]
    assert host_resolvers(tmp_path / "missing") == []


def test_a_networked_call_joins_the_calls_network_never_the_default_bridge() -> None:
    settings = SandboxSettings(calls_network="tenant-calls")
    networked = container_params(
        ContainerSpec("b_1", "img", limits=Limits(network=True)), settings, "w")
    assert networked["network"] == "tenant-calls" and "network_mode" not in networked
    isolated = container_params(ContainerSpec("b_1", "img"), settings, "w")
    assert isolated["network_mode"] == "none" and "network" not in isolated
    assert networked["use_config_proxy"] is False and isolated["use_config_proxy"] is False


def test_egress_settings_are_read_and_checked_at_load() -> None:
    settings = load_settings({"ALGOHOST_EGRESS_ALLOW": "10.0.0.5/32,192.168.1.0/24",
                              "ALGOHOST_BUILD_TIMEOUT_S": "60"})
    assert [str(n) for n in settings.sandbox.egress_allow_networks] == ["10.0.0.5/32",
                                                                       "192.168.1.0/24"]
    assert settings.sandbox.build_timeout_s == 60
    with pytest.raises(ValueError, match="ALGOHOST_EGRESS_ALLOW"):
        load_settings({"ALGOHOST_EGRESS_ALLOW": "10.0.0.0/33"})
    with pytest.raises(ValueError, match="network name"):
        load_settings({"ALGOHOST_CALLS_NETWORK": "a-name-far-too-long"})


def test_blocked_ranges_are_valid_networks() -> None:
    for cidr, why in BLOCKED:
        assert ipaddress.IPv4Network(cidr) and why and '"' not in why
