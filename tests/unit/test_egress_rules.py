"""The egress rule set and the network settings, without a firewall or an engine."""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from algohost.config import SandboxSettings, load_settings
from algohost.errors import EgressNotInstalled, SandboxError
from algohost.sandbox.base import ContainerSpec, Limits
from algohost.sandbox.builder import step_params
from algohost.sandbox.buildplan import Step
from algohost.sandbox.docker import NO_IPV6, container_params
from algohost.sandbox.egress import (
    BLOCKED,
    EGRESS_CHAIN,
    HOST_CHAIN,
    install_rules,
    jumps,
    restore_script,
    restore_script6,
)
from algohost.sandbox.fence import Fence, fence_gaps, may_manage_firewall
from algohost.sandbox.nameservers import host_resolvers

RESOLVER = ipaddress.IPv4Address("10.255.255.53")
LAN = ipaddress.IPv4Network("192.0.2.0/24")


def rules(settings: SandboxSettings, chain: str) -> list[str]:
    script = restore_script(settings, [RESOLVER], [LAN, ipaddress.IPv4Network("172.18.0.0/16")])
    return [line for line in script.splitlines() if line.startswith(f"-A {chain} ")]


def test_every_private_link_local_loopback_and_metadata_range_is_rejected() -> None:
    rejected = [line.split()[3] for line in rules(SandboxSettings(), EGRESS_CHAIN)
                if "REJECT" in line and "--dport 53" not in line]
    for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                 "127.0.0.0/8", "0.0.0.0/8", "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4"):
        assert cidr in rejected
    metadata = [ipaddress.IPv4Address(a) for a in ("169.254.169.254", "100.100.100.200")]
    assert all(any(a in ipaddress.IPv4Network(c) for c in rejected) for a in metadata)
    assert "192.0.2.0/24" in rejected  # the host's LAN, whatever its range
    assert "172.18.0.0/16" not in rejected  # already inside 172.16.0.0/12


def test_port_53_is_open_to_the_allowed_name_servers_alone_before_anything_else() -> None:
    settings = SandboxSettings(egress_allow="10.1.2.0/24, 192.168.5.7/32")
    egress = rules(settings, EGRESS_CHAIN)
    first_reject = next(i for i, line in enumerate(egress) if "REJECT" in line)
    assert [line.split()[3] for line in egress[:first_reject]] == ["10.255.255.53/32"] * 2
    assert all("--dport 53" in line and line.endswith("-j RETURN")
               for line in egress[:first_reject])
    # Any other name server is refused, an allowed CIDR's included: DNS goes where
    # ALGOHOST_EGRESS_DNS says, even to a host the operator opened for its packages.
    other_dns = egress[first_reject:first_reject + 2]
    assert [line.split()[3] for line in other_dns] == ["udp", "tcp"]
    assert all("--dport 53" in line and " -d " not in line and "REJECT" in line
               for line in other_dns)
    allowed = egress[first_reject + 2:first_reject + 4]
    assert [line.split()[3] for line in allowed] == ["10.1.2.0/24", "192.168.5.7/32"]
    assert all(line.endswith("-j RETURN") for line in allowed)


def test_without_name_servers_every_port_53_is_rejected() -> None:
    script = restore_script(SandboxSettings(egress_dns="none"), [], [])
    dns = [line for line in script.splitlines() if "--dport 53" in line]
    assert len(dns) == 4 and all("REJECT" in line and " -d " not in line for line in dns)


def test_the_host_chain_lets_replies_and_allowed_cidrs_through_and_rejects_the_rest() -> None:
    host = rules(SandboxSettings(egress_allow="10.1.2.0/24"), HOST_CHAIN)
    assert "--ctstate RELATED,ESTABLISHED" in host[0] and host[0].endswith("-j RETURN")
    assert all("--dport 53" in line for line in host[1:5])  # a name server on the host
    assert "-d 10.1.2.0/24" in host[5]
    assert host[-1].endswith("REJECT --reject-with icmp-admin-prohibited")
    assert "-d " not in host[-1] and "-p " not in host[-1]


def test_the_jumps_cover_both_bridges_in_forward_and_input() -> None:
    assert sorted(map(tuple, jumps(SandboxSettings()))) == [
        ("DOCKER-USER", "-i", "algohost-builds", "-j", EGRESS_CHAIN),
        ("DOCKER-USER", "-i", "algohost-calls", "-j", EGRESS_CHAIN),
        ("INPUT", "-i", "algohost-builds", "-j", HOST_CHAIN),
        ("INPUT", "-i", "algohost-calls", "-j", HOST_CHAIN),
    ]


def test_ipv6_is_rejected_whole_in_both_chains() -> None:
    lines = restore_script6().splitlines()
    assert lines[:3] == ["*filter", f":{EGRESS_CHAIN} - [0:0]", f":{HOST_CHAIN} - [0:0]"]
    assert [line.split()[1] for line in lines[3:5]] == [EGRESS_CHAIN, HOST_CHAIN]
    assert all(line.endswith("-j REJECT --reject-with icmp6-adm-prohibited")
               and " -d " not in line and " -p " not in line for line in lines[3:5])


class FakeIptables:
    """Just enough of iptables and ip6tables (their -L, -C, -I, -S, restore and save) to
    check what install_rules and the fence ask of them. `reboot()` empties both."""

    def __init__(self, docker_user: bool = True, docker_user6: bool = False) -> None:
        self.docker_user, self.docker_user6 = docker_user, docker_user6
        self.restored: list[str] = []
        self.reboot()

    def reboot(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {
            "iptables": {"INPUT": [], "FORWARD": ["-j DOCKER-USER"]},
            "ip6tables": {"INPUT": [], "FORWARD": []}}
        if self.docker_user:
            self.tables["iptables"]["DOCKER-USER"] = ["-j RETURN"]
        if self.docker_user6:
            self.tables["ip6tables"]["DOCKER-USER"] = ["-j RETURN"]

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        ok, fail = (subprocess.CompletedProcess(argv, code, "", "") for code in (0, 1))
        if argv[0] == "ip":
            return subprocess.CompletedProcess(argv, 0, '[{"ifname": "eth0", "addr_info": '
                                               '[{"local": "192.0.2.2", "prefixlen": 24}]}]', "")
        command, _, verb = argv[0].partition("-")
        chains = self.tables[command]
        if verb == "restore":
            self.restored.append(stdin)
            for line in stdin.splitlines():
                if line.startswith(":"):
                    chains[line[1:].split()[0]] = []
                elif line.startswith("-A "):
                    chains[line.split()[1]].append(line.split(" ", 2)[2])
            return ok
        if verb == "save":
            out = ["*filter", *(f":{chain} - [0:0]" for chain in chains)]
            out += [f"-A {chain} {rule}" for chain, rules in chains.items() for rule in rules]
            return subprocess.CompletedProcess(argv, 0, "\n".join([*out, "COMMIT", ""]), "")
        if argv[1:3] == ["-n", "-L"]:
            return ok if argv[3] in chains else fail
        chain, spec = argv[2], " ".join(argv[3:])
        if argv[1] == "-C":
            return ok if spec in chains[chain] else fail
        if argv[1] == "-I":
            position, _, rule = spec.partition(" ")
            chains[chain].insert(int(position) - 1, rule)
            return ok
        raise AssertionError(f"unexpected {argv}")


def fake_proc(root: Path, bridges: Sequence[str] = ("algohost-calls", "algohost-builds")
              ) -> Path:
    """A /proc/sys/net/ipv6 with each bridge's IPv6 on, as Docker leaves it."""
    for bridge in bridges:
        (root / "conf" / bridge).mkdir(parents=True)
        (root / "conf" / bridge / "disable_ipv6").write_text("0\n")
    return root


def test_installing_twice_leaves_one_jump_each_before_docker_users_return(
        tmp_path: Path) -> None:
    iptables, proc = FakeIptables(), fake_proc(tmp_path)
    for _ in range(2):
        install_rules(SandboxSettings(), run=iptables, resolvers=[RESOLVER], proc=proc)
    docker_user = iptables.tables["iptables"]["DOCKER-USER"]
    assert docker_user[-1] == "-j RETURN" and len(docker_user) == 3
    assert len(iptables.tables["iptables"]["INPUT"]) == 2
    assert iptables.restored[0] == iptables.restored[2]
    assert "-d 192.0.2.0/24" in iptables.restored[0]


def test_without_dockers_chain_nothing_is_installed(tmp_path: Path) -> None:
    iptables = FakeIptables(docker_user=False)
    with pytest.raises(SandboxError, match="DOCKER-USER"):
        install_rules(SandboxSettings(), run=iptables, resolvers=[], proc=tmp_path)
    assert not iptables.restored


@pytest.mark.parametrize("docker_user6", [False, True])
def test_ipv6_is_fenced_in_dockers_chain_or_else_forward_and_the_bridges_lose_it(
        tmp_path: Path, docker_user6: bool) -> None:
    iptables, proc = FakeIptables(docker_user6=docker_user6), fake_proc(tmp_path)
    install_rules(SandboxSettings(), run=iptables, resolvers=[], proc=proc)
    v6 = iptables.tables["ip6tables"]
    forward = "DOCKER-USER" if docker_user6 else "FORWARD"
    assert sorted(v6[forward][:2]) == [f"-i algohost-builds -j {EGRESS_CHAIN}",
                                       f"-i algohost-calls -j {EGRESS_CHAIN}"]
    assert sorted(v6["INPUT"]) == [f"-i algohost-builds -j {HOST_CHAIN}",
                                   f"-i algohost-calls -j {HOST_CHAIN}"]
    assert iptables.restored[1] == restore_script6()
    for bridge in ("algohost-calls", "algohost-builds"):
        assert (proc / "conf" / bridge / "disable_ipv6").read_text() == "1\n"


def test_a_kernel_without_ipv6_gets_ipv4_rules_only(tmp_path: Path) -> None:
    iptables = FakeIptables()
    install_rules(SandboxSettings(), run=iptables, resolvers=[], proc=tmp_path / "absent")
    assert len(iptables.restored) == 1 and not iptables.tables["ip6tables"]["INPUT"]
    assert fence_gaps(SandboxSettings(), iptables, tmp_path / "absent") == []


def test_the_fence_names_what_a_reboot_took(tmp_path: Path) -> None:
    iptables, proc = FakeIptables(), fake_proc(tmp_path)
    install_rules(SandboxSettings(), run=iptables, resolvers=[], proc=proc)
    assert fence_gaps(SandboxSettings(), iptables, proc) == []
    iptables.reboot()
    (proc / "conf" / "algohost-calls" / "disable_ipv6").write_text("0\n")
    gaps = fence_gaps(SandboxSettings(), iptables, proc)
    assert f"IPv4: no `DOCKER-USER -i algohost-calls -j {EGRESS_CHAIN}`" in gaps
    assert f"IPv4: chain {HOST_CHAIN} rejects nothing" in gaps
    assert f"IPv6: no `FORWARD -i algohost-builds -j {EGRESS_CHAIN}`" in gaps
    assert "IPv6 is on for bridge algohost-calls" in gaps


def test_a_worker_that_may_not_install_refuses_networked_containers(tmp_path: Path) -> None:
    iptables = FakeIptables()
    fence = Fence(SandboxSettings(), may_install=False, run=iptables, proc=fake_proc(tmp_path))
    with pytest.raises(EgressNotInstalled, match="algohost egress install") as caught:
        fence()
    assert caught.value.code == "egress_not_installed"
    assert not iptables.restored  # it looked, and changed nothing


def test_a_root_worker_puts_back_the_fence_a_reboot_took(tmp_path: Path) -> None:
    iptables, proc = FakeIptables(), fake_proc(tmp_path)
    fence = Fence(SandboxSettings(egress_dns="192.0.2.53"), may_install=True, run=iptables,
                  proc=proc)
    fence()
    iptables.reboot()
    fence()
    assert fence_gaps(SandboxSettings(), iptables, proc) == []
    assert "-d 192.0.2.53/32 -p udp" in iptables.restored[-2]
    fence()  # standing: nothing installed again
    assert len(iptables.restored) == 4


@pytest.mark.parametrize(("effective", "may"), [("000001ffffffffff", True),  # root
                                                 ("0000000000001000", True),  # NET_ADMIN
                                                 ("0000000000000000", False),
                                                 ("00000000a80425fb", False)])  # Docker's
def test_root_or_cap_net_admin_may_manage_the_firewall(tmp_path: Path, effective: str,
                                                       may: bool) -> None:
    status = tmp_path / "status"
    status.write_text(f"Name:\tcelery\nCapInh:\t0000000000000000\nCapEff:\t{effective}\n")
    assert may_manage_firewall(status) is may
    assert may_manage_firewall(tmp_path / "missing") is False


def test_a_fence_that_cannot_be_read_refuses(tmp_path: Path) -> None:
    def denied(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(list(argv), 4, "", "Permission denied (you must "
                                           "be root)")

    with pytest.raises(EgressNotInstalled, match="cannot read the IPv4 rules: Permission"):
        Fence(SandboxSettings(), may_install=False, run=denied, proc=tmp_path)()


def test_name_servers_are_read_from_resolv_conf_loopback_ones_aside(tmp_path: Path) -> None:
    conf, resolved = tmp_path / "resolv.conf", tmp_path / "resolved.conf"
    conf.write_text("# comment\nnameserver 10.255.255.53\nnameserver fd00::1\nsearch x\n")
    assert host_resolvers([conf, resolved]) == [RESOLVER]
    assert host_resolvers([tmp_path / "missing"]) == []
    # systemd-resolved's stub in resolv.conf: its upstream servers are what containers use.
    conf.write_text("nameserver 127.0.0.53\n")
    resolved.write_text("nameserver 192.0.2.53\nnameserver 192.0.2.54\n")
    assert [str(s) for s in host_resolvers([conf, resolved])] == ["192.0.2.53", "192.0.2.54"]


def test_a_networked_call_joins_the_calls_network_never_the_default_bridge() -> None:
    settings = SandboxSettings(calls_network="tenant-calls", egress_dns="192.0.2.53")
    networked = container_params(
        ContainerSpec("b_1", "img", limits=Limits(network=True)), settings, "w")
    assert networked["network"] == "tenant-calls" and "network_mode" not in networked
    isolated = container_params(ContainerSpec("b_1", "img"), settings, "w")
    assert isolated["network_mode"] == "none" and "network" not in isolated
    assert networked["use_config_proxy"] is False and isolated["use_config_proxy"] is False


def test_networked_containers_and_build_steps_get_no_ipv6_and_only_the_allowed_dns() -> None:
    settings = SandboxSettings(egress_dns="192.0.2.53, 198.51.100.53")
    call = container_params(ContainerSpec("b_1", "img", limits=Limits(network=True)),
                            settings, "w")
    step = step_params(Step("venv", ("true",)), settings, "b_1")
    for params in (call, step):
        assert params["sysctls"] == NO_IPV6
        assert params["dns"] == ["192.0.2.53", "198.51.100.53"]
    assert NO_IPV6 == {"net.ipv6.conf.all.disable_ipv6": "1",
                       "net.ipv6.conf.default.disable_ipv6": "1"}
    without = step_params(Step("venv", ("true",)), SandboxSettings(egress_dns="none"), "b")
    assert "dns" not in without  # the engine's fallback servers, which the rules reject
    isolated = container_params(ContainerSpec("b_1", "img"), settings, "w")
    assert "sysctls" not in isolated and "dns" not in isolated


def test_name_server_settings_are_checked_at_load() -> None:
    assert load_settings({}).sandbox.egress_dns_servers is None  # the host's
    assert load_settings({"ALGOHOST_EGRESS_DNS": "none"}).sandbox.egress_dns_servers == ()
    servers = load_settings({"ALGOHOST_EGRESS_DNS": "192.0.2.53, 10.0.0.2"}).sandbox
    assert [str(s) for s in servers.egress_dns_servers or ()] == ["192.0.2.53", "10.0.0.2"]
    with pytest.raises(ValueError, match="ALGOHOST_EGRESS_DNS"):
        load_settings({"ALGOHOST_EGRESS_DNS": "resolver.example"})
    with pytest.raises(ValueError, match="loopback"):
        load_settings({"ALGOHOST_EGRESS_DNS": "127.0.0.53"})


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


def test_a_calls_or_builds_worker_checks_the_fence_at_start_a_webhooks_worker_does_not(
        caplog: pytest.LogCaptureFixture) -> None:
    from algohost.worker import tasks

    asked: list[str] = []

    def refusing() -> None:
        asked.append("fence")
        raise EgressNotInstalled("the egress fence is not installed")

    def consumer(*queues: str) -> Any:
        return SimpleNamespace(task_consumer=SimpleNamespace(
            queues=[SimpleNamespace(name=name) for name in queues]))

    runtime: Any = SimpleNamespace(fence=refusing)
    tasks._check_fence(runtime, consumer("webhooks"))
    assert asked == []
    tasks._check_fence(runtime, consumer("builds"))
    assert asked == ["fence"]
    assert "networked calls and builds will fail with egress_not_installed" in caplog.text
