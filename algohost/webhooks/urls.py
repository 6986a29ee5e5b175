"""Which webhook URLs may be called: http(s) only, and never a private address by default.

A webhook is a request the server makes on a caller's behalf; without these checks it
reaches the operator's own network (metadata services, Redis, the Docker API).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit

from algohost.errors import WebhookRefused

SCHEMES = ("http", "https")

_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join((  # RFC 4291 text forms, without an embedded IPv4 part or a zone
    rf"(?:{_H16}:){{7}}{_H16}", rf"(?:{_H16}:){{1,7}}:", rf"(?:{_H16}:){{1,6}}:{_H16}",
    *(rf"(?:{_H16}:){{1,{n}}}(?::{_H16}){{1,{7 - n}}}" for n in range(5, 0, -1)),
    rf":(?:(?::{_H16}){{1,7}}|:)"))
_PORT = r"[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]"
# What the API accepts as a webhook URL, as a pattern the OpenAPI document can carry:
# every URL it matches passes parse_url (a name or an IP literal as host, a valid port).
URL_PATTERN = (rf"^[Hh][Tt][Tt][Pp][Ss]?://(?:[A-Za-z0-9.-]+|\[(?:{_IPV6})\])"
               rf"(?::(?:{_PORT}))?(?:[/?#][^ \t\n\r\f\v]*)?$")
_URL = re.compile(URL_PATTERN)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
Resolver = Callable[[str, int], list[str]]


def parse_url(url: str) -> SplitResult:
    """The URL's parts; WebhookRefused unless it is an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise WebhookRefused(f"the webhook URL is not valid: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise WebhookRefused("a webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise WebhookRefused("the webhook URL has no host")
    return parts


def documented_url(url: str) -> str:
    """`url` if it is a webhook URL the API documents (URL_PATTERN); else WebhookRefused."""
    parse_url(url)  # its messages say what is wrong more precisely than the pattern can
    if _URL.fullmatch(url) is None:
        raise WebhookRefused("a webhook URL is http(s)://host[:port][/path], its host a DNS "
                             "name or an IP literal")
    return url


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped and NAT64 ones unwrapped)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def check_address(address: str, host: str) -> None:
    if not is_public(address):
        where = f"address {address} is" if host == address else \
            f"host {host} resolves to {address},"
        raise WebhookRefused(
            f"the webhook {where} a loopback, private, link-local or reserved address "
            "(an operator may allow those with ALGOHOST_WEBHOOK_ALLOW_PRIVATE=1)",
            address=address)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(f"cannot resolve {host}: {exc.strerror or exc}") from exc
    return sorted({str(info[4][0]) for info in infos})


def check_url(url: str, allow_private: bool, resolve: Resolver = system_resolver) -> None:
    """Refuse a URL that is not http(s) or whose host has any non-public address.

    Raises WebhookRefused (never worth retrying) or OSError (resolution failed: retry)."""
    parts = parse_url(url)
    if allow_private:
        return
    host = str(parts.hostname)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in resolve(host, port):
        check_address(address, host)


def refused_literal(url: str, allow_private: bool) -> None:
    """At submit time, without DNS: refuse a host that is a non-public IP literal."""
    parts = parse_url(url)
    if allow_private:
        return
    host = str(parts.hostname)
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return  # a name: checked when it is resolved, at every attempt
    check_address(host, host)
