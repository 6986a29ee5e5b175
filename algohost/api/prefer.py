"""The `Prefer` request header (RFC 7240): how long a caller will wait for a job.

Only `wait=N` and `respond-async` mean something here. As the RFC asks, a preference
that cannot be honoured is ignored (a wait over the maximum is honoured up to it, and
only the first `wait` counts); only a header that is not Prefer syntax is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from algohost.errors import InvalidPrefer

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# RFC 9110 quoted-string: no control characters inside (a newline is no header text).
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_VALUE = rf"(?:{_TOKEN}|{_QUOTED})"
# preference = token [ BWS "=" BWS value ] *( OWS ";" [ OWS parameter ] )
_PREFERENCE_TEXT = (rf"[ \t]*(?P<name>{_TOKEN})(?:[ \t]*=[ \t]*(?P<value>{_VALUE}))?"
                    rf"(?P<params>(?:[ \t]*;[ \t]*(?:{_TOKEN}(?:[ \t]*=[ \t]*{_VALUE})?)?)*)"
                    r"[ \t]*")
_PREFERENCE = re.compile(_PREFERENCE_TEXT)
# The header: a comma-separated list whose elements may be empty (legal HTTP list syntax).
_ELEMENT = _PREFERENCE_TEXT.replace("?P<name>", "").replace("?P<value>", "") \
    .replace("?P<params>", "")
PATTERN = rf"^(?:{_ELEMENT}|[ \t]*)(?:,(?:{_ELEMENT}|[ \t]*))*$"
_HEADER = re.compile(PATTERN)
_SECONDS = re.compile(r"[0-9]{1,12}")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _preferences(header: str) -> list[tuple[str, str | None]]:
    if _HEADER.fullmatch(header) is None:
        raise InvalidPrefer(f"the Prefer header is not a list of preferences: {header[:200]!r}",
                            header=header[:200])
    found: list[tuple[str, str | None]] = []
    position = 0
    while position < len(header):
        match = _PREFERENCE.match(header, position)
        if match is None or match.end() == position:
            position += 1  # a separator or the blanks of an empty element
            continue
        value = match.group("value")
        found.append((match.group("name").lower(), None if value is None else _unquote(value)))
        position = match.end()
    return found


def parse_prefer(headers: Iterable[str], max_wait_s: int) -> int:
    """Seconds to wait for a terminal job (0: answer at once) from the Prefer header(s)."""
    for header in headers:
        for name, value in _preferences(header):
            if name == "wait" and value is not None and _SECONDS.fullmatch(value):
                return min(int(value), max_wait_s)  # the first wait is the one that counts
    return 0
