"""The `Prefer` request header (RFC 7240): how long a caller will wait for a job.

Only `wait=N` and `respond-async` mean something here; other well-formed
preferences are ignored as the RFC asks, but a malformed header is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from algohost.errors import InvalidPrefer

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_VALUE = rf"(?:{_TOKEN}|{_QUOTED})"
# preference = token [ BWS "=" BWS value ] *( OWS ";" [ OWS parameter ] )
_PREFERENCE = re.compile(
    rf"\s*(?P<name>{_TOKEN})(?:\s*=\s*(?P<value>{_VALUE}))?"
    rf"(?P<params>(?:\s*;\s*(?:{_TOKEN}(?:\s*=\s*{_VALUE})?)?)*)\s*")
_SECONDS = re.compile(r"[0-9]{1,6}")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _preferences(header: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    position = 0
    while position < len(header):
        match = _PREFERENCE.match(header, position)
        if match is None or match.end() == position:
            # An empty list element (", ,") is legal HTTP list syntax.
            if header[position] in ", \t":
                position += 1
                continue
            raise InvalidPrefer(f"cannot parse the Prefer header near {header[position:]!r}",
                                header=header)
        value = match.group("value")
        found.append((match.group("name").lower(), None if value is None else _unquote(value)))
        position = match.end()
        if position < len(header):
            if header[position] != ",":
                raise InvalidPrefer(f"cannot parse the Prefer header near {header[position:]!r}",
                                    header=header)
            position += 1
    return found


def parse_prefer(headers: Iterable[str], max_wait_s: int) -> int:
    """Seconds to wait for a terminal job (0: answer at once) from the Prefer header(s)."""
    wait: int | None = None
    for header in headers:
        for name, value in _preferences(header):
            if name == "wait":
                if wait is not None:
                    raise InvalidPrefer("Prefer names 'wait' more than once")
                if value is None or not _SECONDS.fullmatch(value) or int(value) > max_wait_s:
                    raise InvalidPrefer(
                        f"Prefer wait must be a whole number of seconds from 0 to {max_wait_s}",
                        max_wait_s=max_wait_s)
                wait = int(value)
            elif name == "respond-async" and value is not None:
                raise InvalidPrefer("Prefer respond-async takes no value")
    return wait or 0
