"""The name servers networked containers may use: the operator's list, or the host's own.

The same list is given to each networked container (Docker's `dns`) and opened on port
53 by the egress rules; every other name server is rejected. It never names a loopback
server: Docker would reach that from the host's namespace, outside the fence.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from pathlib import Path

from algohost.config import SandboxSettings

RESOLV_CONF = Path("/etc/resolv.conf")
# Where systemd-resolved lists its upstream servers when /etc/resolv.conf names only its
# own stub (127.0.0.53); Docker reads it for the same reason.
RESOLVED_CONF = Path("/run/systemd/resolve/resolv.conf")


def host_resolvers(paths: Sequence[Path] = (RESOLV_CONF, RESOLVED_CONF)
                   ) -> list[ipaddress.IPv4Address]:
    """The host's IPv4 name servers but loopback ones, from the first file naming any."""
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        found = []
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "nameserver":
                try:
                    server = ipaddress.IPv4Address(words[1])
                except ValueError:
                    continue  # IPv6: tenant containers have none
                if not server.is_loopback and server not in found:
                    found.append(server)
        if found:
            return found
    return []


def allowed_resolvers(settings: SandboxSettings) -> list[ipaddress.IPv4Address]:
    """ALGOHOST_EGRESS_DNS's servers (none for `none`), or the host's when it is unset."""
    servers = settings.egress_dns_servers
    return host_resolvers() if servers is None else list(servers)
