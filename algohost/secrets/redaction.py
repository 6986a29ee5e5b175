"""Replace secret values with `***` in anything an algorithm hands back: output, logs, errors.

A safety net, not a guarantee: a value the algorithm transforms (encodes, splits,
hashes) passes through. It must never log or store the values it is given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
# Lines of a multi-line secret (a PEM key) are masked one by one when at least this long,
# since an algorithm that prints the key line by line would otherwise leak it.
MIN_LINE_CHARS = 8


def _variants(secret: str) -> set[str]:
    found = {secret}
    escaped = json.dumps(secret, ensure_ascii=False)[1:-1]  # as it appears inside JSON text
    found.add(escaped)
    found.add(json.dumps(secret)[1:-1])
    if "\n" in secret:
        found.update(line.strip() for line in secret.splitlines()
                     if len(line.strip()) >= MIN_LINE_CHARS)
    return {v for v in found if v}


def _pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants |= _variants(secret)
    if not variants:
        return None
    # Longest first: where one secret contains another, the whole of it is masked.
    ordered = sorted(variants, key=lambda v: (-len(v), v))
    return re.compile("|".join(re.escape(v) for v in ordered))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    pattern = _pattern(secrets)
    return text if pattern is None or not text else pattern.sub(MASK, text)


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """A copy of a JSON-like value (dicts, lists, strings; keys too) with secrets masked."""
    pattern = _pattern(secrets)
    if pattern is None:
        return value
    return _walk(value, pattern)


def _walk(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(MASK, value)
    if isinstance(value, dict):
        return {_walk(k, pattern): _walk(v, pattern) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, pattern) for item in value]
    return value


def longest_form(secrets: Iterable[str]) -> int:
    """The length of the longest text redaction masks for these secrets (0 for none)."""
    return max((len(v) for s in secrets if s for v in _variants(s)), default=0)


def redact_text_after(text: str, secrets: Iterable[str], skip: int) -> str:
    """`text` masked, without its first `skip` characters. A match that spans the boundary
    is masked whole; what is skipped is never shown, so a cut made there by someone who
    could not redact (the start of a secret lost before `skip`) leaves no tail behind."""
    pattern = _pattern(secrets)
    if pattern is None:
        return text[skip:]
    pieces: list[str] = []
    position = skip
    for match in pattern.finditer(text):
        if match.end() <= skip:
            continue
        pieces.append(text[position:max(match.start(), position)])
        pieces.append(MASK)
        position = match.end()
    pieces.append(text[position:])
    return "".join(pieces)
