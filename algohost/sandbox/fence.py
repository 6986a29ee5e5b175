"""The check standing before every networked container: is the egress fence in the kernel?

Firewall rules do not survive a reboot, and a firewall reload can flush them while the
workers run. So a worker asks before each networked call container and each build step;
as root (or with CAP_NET_ADMIN) it puts back what is missing, otherwise it refuses
(`egress_not_installed`).
It never starts a networked container while a part of the fence is missing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from algohost.config import SandboxSettings
from algohost.errors import EgressNotInstalled, SandboxError
from algohost.sandbox.egress import (
    EGRESS_CHAIN,
    HOST_CHAIN,
    PROC_IPV6,
    Runner,
    install_rules,
    jumps,
    networks,
    run_command,
)

log = logging.getLogger(__name__)
CAP_NET_ADMIN = 12  # its bit in /proc/<pid>/status's CapEff


def _chain_gaps(saved: str, rules: list[list[str]], family: str) -> list[str]:
    """What of algohost's jumps and chains an `iptables-save -t filter` output lacks."""
    lines = set(saved.splitlines())
    gaps = [f"{family}: no `{' '.join(rule)}`" for rule in rules
            if f"-A {' '.join(rule)}" not in lines]
    for chain in (EGRESS_CHAIN, HOST_CHAIN):
        if not any(line.startswith(f"-A {chain} ") and " -j REJECT" in line for line in lines):
            gaps.append(f"{family}: chain {chain} rejects nothing")
    return gaps


def fence_gaps(settings: SandboxSettings, run: Runner = run_command,
               proc: Path = PROC_IPV6) -> list[str]:
    """What of the fence is missing: [] when every jump, chain and IPv6 switch is in place."""
    try:
        saved = run(["iptables-save", "-t", "filter"], "")
        if saved.returncode != 0:
            return [f"cannot read the IPv4 rules: {saved.stderr.strip()}"]
        gaps = _chain_gaps(saved.stdout, jumps(settings), "IPv4")
        if not proc.is_dir():
            return gaps
        saved = run(["ip6tables-save", "-t", "filter"], "")
    except SandboxError as exc:
        return [exc.message]
    if saved.returncode != 0:
        return [*gaps, f"cannot read the IPv6 rules: {saved.stderr.strip()}"]
    forward = "DOCKER-USER" if ":DOCKER-USER " in saved.stdout else "FORWARD"
    gaps += _chain_gaps(saved.stdout, jumps(settings, forward), "IPv6")
    for bridge in networks(settings).values():
        switch = proc / "conf" / bridge / "disable_ipv6"
        if switch.exists() and switch.read_text().strip() != "1":
            gaps.append(f"IPv6 is on for bridge {bridge}")
    return gaps


def may_manage_firewall(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process may read and change the rules: root, or a process given
    CAP_NET_ADMIN (systemd's `AmbientCapabilities=`)."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


class Fence:
    """Called before a networked container starts; raises EgressNotInstalled unless the
    fence stands, after putting it back itself when it `may_install` (may_manage_firewall)."""

    def __init__(self, settings: SandboxSettings, may_install: bool, run: Runner = run_command,
                 proc: Path = PROC_IPV6) -> None:
        self.settings = settings
        self.may_install = may_install
        self._run = run
        self._proc = proc
        self._lock = threading.Lock()  # one check (and one install) at a time

    def __call__(self) -> None:
        with self._lock:
            gaps = fence_gaps(self.settings, self._run, self._proc)
            if gaps and self.may_install:
                log.warning("the egress fence is incomplete (%s): installing it", "; ".join(gaps))
                try:
                    install_rules(self.settings, self._run, proc=self._proc)
                except SandboxError as exc:
                    log.error("could not install the egress fence: %s", exc.message)
                gaps = fence_gaps(self.settings, self._run, self._proc)
        if gaps:
            raise EgressNotInstalled(
                "networked containers are refused until the egress fence is installed ("
                + "; ".join(gaps) + "): run `algohost egress install` as root")
