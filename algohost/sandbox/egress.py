"""The networks that networked calls and builds join, and the host firewall fencing them.

Calls and builds each get a bridge of their own with inter-container traffic off.
The rules reject what leaves those bridges for private, link-local, loopback,
metadata and reserved ranges, and anything addressed to the host itself, except
the CIDRs the operator allows. Installing is idempotent and touches only
algohost's own chains and the jumps into them, never another bridge's traffic.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import docker.errors

from algohost.config import SandboxSettings
from algohost.errors import SandboxError
from algohost.sandbox.docker import LABEL_MANAGED, translate_docker_errors
from algohost.sandbox.nameservers import allowed_resolvers

LABEL_NETWORK = "algohost.network"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_OPTION = "com.docker.network.bridge.name"
EGRESS_CHAIN = "ALGOHOST-EGRESS"  # jumped to from DOCKER-USER: traffic the host forwards
HOST_CHAIN = "ALGOHOST-HOST"  # jumped to from INPUT: traffic addressed to the host itself
REJECT = ("-j", "REJECT", "--reject-with", "icmp-admin-prohibited")
REJECT6 = ("-j", "REJECT", "--reject-with", "icmp6-adm-prohibited")
DNS_PROTOCOLS = ("udp", "tcp")
PROC_IPV6 = Path("/proc/sys/net/ipv6")  # absent when the kernel has no IPv6

# Destinations no tenant reaches unless allowed (RFC 6890's non-global IPv4 ranges that
# lead somewhere on a host or a LAN). Rejected rather than silently dropped, so a
# tenant's connect fails at once instead of hanging until its own timeout. The host's
# own subnets (its LAN) are added at install time: they can be any range.
BLOCKED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network; on Linux 0.0.0.0 reaches the host"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space; a cloud metadata address 100.100.100.200"),
    ("127.0.0.0/8", "loopback, and whatever a host maps onto it"),
    ("169.254.0.0/16", "link-local; the cloud metadata address 169.254.169.254"),
    ("172.16.0.0/12", "private; Docker bridges and the containers on them"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, and the broadcast address"),
)

Runner = Callable[[Sequence[str], str], "subprocess.CompletedProcess[str]"]


def networks(settings: SandboxSettings) -> dict[str, str]:
    """purpose -> Docker network name (the bridge interface has the same name)."""
    return {"calls": settings.calls_network, "builds": settings.builds_network}


def ensure_networks(client: Any, settings: SandboxSettings) -> list[str]:
    """Create the calls and builds networks that are missing; returns those created.

    An existing network of that name must have inter-container traffic off and its
    bridge named after it, or the firewall rules (keyed by interface) would miss it."""
    created = []
    for purpose, name in networks(settings).items():
        with translate_docker_errors(f"creating network {name}"):
            try:
                network = client.networks.get(name)
            except docker.errors.NotFound:
                network = _create(client, name, purpose)
                created.append(name)
        _check(network.attrs, name)
    return created


def _create(client: Any, name: str, purpose: str) -> Any:
    try:
        return client.networks.create(
            name, driver="bridge", check_duplicate=True, enable_ipv6=False, internal=False,
            options={ICC_OPTION: "false", BRIDGE_OPTION: name},
            labels={LABEL_MANAGED: "1", LABEL_NETWORK: purpose})
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
        return client.networks.get(name)  # another process created it meanwhile


def _check(attrs: dict[str, Any], name: str) -> None:
    options = attrs.get("Options") or {}
    if attrs.get("Driver") != "bridge" or options.get(ICC_OPTION) != "false" \
            or options.get(BRIDGE_OPTION) != name or attrs.get("EnableIPv6"):
        raise SandboxError(
            f"network {name} exists but is not algohost's (a bridge named {name}, "
            f"{ICC_OPTION}=false, no IPv6): remove it or name another network")


def host_subnets(run: Runner | None = None) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of the host's interfaces but loopback: its LAN, whatever its range."""
    done = (run or run_command)(["ip", "-j", "-4", "addr", "show"], "")
    if done.returncode != 0:
        raise SandboxError(f"ip addr failed: {done.stderr.strip()}")
    subnets = []
    for link in json.loads(done.stdout or "[]"):
        for address in link.get("addr_info", []):
            subnet = ipaddress.IPv4Network(f"{address['local']}/{address['prefixlen']}",
                                           strict=False)
            if not subnet.is_loopback and subnet not in subnets:
                subnets.append(subnet)
    return subnets


def _rule(chain: str, match: str, action: str, why: str) -> str:
    return f'-A {chain} {match}{" " if match else ""}-m comment --comment "{why}" {action}'


def _dns_rules(chain: str, resolvers: Sequence[ipaddress.IPv4Address]) -> list[str]:
    """Port 53 to the allowed name servers returns, to any other is rejected: a tenant
    resolves through those alone, whatever resolver it names itself."""
    rules = [_rule(chain, f"-d {server}/32 -p {proto} -m {proto} --dport 53", "-j RETURN",
                   "ALGOHOST_EGRESS_DNS") for server in resolvers for proto in DNS_PROTOCOLS]
    return rules + [_rule(chain, f"-p {proto} -m {proto} --dport 53", " ".join(REJECT),
                          "a name server not in ALGOHOST_EGRESS_DNS") for proto in DNS_PROTOCOLS]


def restore_script(settings: SandboxSettings,
                   resolvers: Sequence[ipaddress.IPv4Address] = (),
                   lan: Sequence[ipaddress.IPv4Network] = ()) -> str:
    """iptables-restore input that (re)defines algohost's two chains in one commit.

    Declaring a chain in `--noflush` mode empties it, so the rule set is replaced
    atomically and running it twice leaves the same rules."""
    allow = [str(cidr) for cidr in settings.egress_allow_networks]
    reject = " ".join(REJECT)
    lines = ["*filter", f":{EGRESS_CHAIN} - [0:0]", f":{HOST_CHAIN} - [0:0]"]
    lines += _dns_rules(EGRESS_CHAIN, resolvers)
    lines += [_rule(EGRESS_CHAIN, f"-d {cidr}", "-j RETURN", "ALGOHOST_EGRESS_ALLOW")
              for cidr in allow]
    fixed = [ipaddress.IPv4Network(cidr) for cidr, _ in BLOCKED]
    extra = [net for net in lan if not any(net.subnet_of(other) for other in fixed)]
    blocked = [*BLOCKED, *((str(net), "a subnet of the host, its LAN") for net in extra)]
    lines += [_rule(EGRESS_CHAIN, f"-d {cidr}", reject, why) for cidr, why in blocked]
    # Replies to connections the host opened pass; nothing a container starts does.
    lines.append(_rule(HOST_CHAIN, "-m conntrack --ctstate RELATED,ESTABLISHED", "-j RETURN",
                       "replies to the host"))
    lines += _dns_rules(HOST_CHAIN, resolvers)
    lines += [_rule(HOST_CHAIN, f"-d {cidr}", "-j RETURN", "ALGOHOST_EGRESS_ALLOW")
              for cidr in allow]
    lines += [_rule(HOST_CHAIN, "", reject, "the host itself"), "COMMIT", ""]
    return "\n".join(lines)


def restore_script6() -> str:
    """ip6tables-restore input: tenants have no IPv6, so nothing IPv6 leaves the bridges."""
    reject = " ".join(REJECT6)
    return "\n".join(["*filter", f":{EGRESS_CHAIN} - [0:0]", f":{HOST_CHAIN} - [0:0]",
                      _rule(EGRESS_CHAIN, "", reject, "no IPv6 from algohost's bridges"),
                      _rule(HOST_CHAIN, "", reject, "no IPv6 from algohost's bridges"),
                      "COMMIT", ""])


def jumps(settings: SandboxSettings, forward: str = "DOCKER-USER") -> list[list[str]]:
    """The rules sending each bridge's traffic into algohost's chains, first in their chain.

    `forward` is where forwarded traffic is judged: Docker's DOCKER-USER, or FORWARD itself
    for IPv6 when Docker manages no IPv6 rules (and so adds none that could come first)."""
    rules = []
    for bridge in networks(settings).values():
        rules.append([forward, "-i", bridge, "-j", EGRESS_CHAIN])
        rules.append(["INPUT", "-i", bridge, "-j", HOST_CHAIN])
    return rules


def ipv6_forward_chain(run: Runner) -> str:
    return "DOCKER-USER" if run(["ip6tables", "-n", "-L", "DOCKER-USER"], "").returncode == 0 \
        else "FORWARD"


def run_command(argv: Sequence[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=30, check=False)
    except FileNotFoundError as exc:
        raise SandboxError(f"{argv[0]} is not installed (Debian: the iptables package)") \
            from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SandboxError(f"{argv[0]} failed: {exc}") from exc


def install_rules(settings: SandboxSettings, run: Runner = run_command,
                  resolvers: Sequence[ipaddress.IPv4Address] | None = None,
                  proc: Path = PROC_IPV6) -> None:
    """Install (or refresh) the egress rules; needs root and Docker's DOCKER-USER chain.

    Where the kernel has IPv6, the bridges' own IPv6 is turned off and ip6tables rejects
    whatever IPv6 still comes from them: containers there get none (`NO_IPV6`), and
    ICC and the IPv4 rules would not stop it."""
    if run(["iptables", "-n", "-L", "DOCKER-USER"], "").returncode != 0:
        raise SandboxError("the DOCKER-USER chain is missing: start dockerd with its iptables "
                           "management on before installing algohost's egress rules")
    script = restore_script(settings, allowed_resolvers(settings) if resolvers is None
                            else resolvers, host_subnets(run))
    _restore(run, "iptables-restore", script)
    _insert(run, "iptables", jumps(settings))
    if not proc.is_dir():
        return
    _restore(run, "ip6tables-restore", restore_script6())
    _insert(run, "ip6tables", jumps(settings, ipv6_forward_chain(run)))
    for bridge in networks(settings).values():
        switch = proc / "conf" / bridge / "disable_ipv6"
        if switch.exists():  # Docker makes a network's bridge with the network
            try:
                switch.write_text("1\n")
            except OSError as exc:
                raise SandboxError(f"could not turn IPv6 off on {bridge}: {exc}") from exc


def _restore(run: Runner, command: str, script: str) -> None:
    done = run([command, "--noflush"], script)
    if done.returncode != 0:
        raise SandboxError(f"{command} refused the egress rules: {done.stderr.strip()}")


def _insert(run: Runner, command: str, rules: list[list[str]]) -> None:
    for rule in rules:
        chain, spec = rule[0], rule[1:]
        if run([command, "-C", chain, *spec], "").returncode == 0:
            continue  # already there; inserting again would only duplicate it
        done = run([command, "-I", chain, "1", *spec], "")
        if done.returncode != 0:
            raise SandboxError(f"could not add {' '.join(rule)} ({command}): "
                               f"{done.stderr.strip()}")


def installed_rules(run: Runner = run_command, proc: Path = PROC_IPV6) -> str:
    """The rules as the kernel holds them: the jumps, then algohost's chains; IPv4, then
    IPv6 where the kernel has it."""
    parts = []
    families = [("iptables", "DOCKER-USER")]
    if proc.is_dir():
        families.append(("ip6tables", ipv6_forward_chain(run)))
    for command, forward in families:
        parts.append(f"# {command}\n")
        for chain in (forward, "INPUT", EGRESS_CHAIN, HOST_CHAIN):
            done = run([command, "-S", chain], "")
            parts.append(done.stdout if done.returncode == 0 else f"# {chain}: {done.stderr}")
    return "".join(parts)
