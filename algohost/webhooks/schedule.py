"""When to try a webhook again: the configured schedule with ±20% jitter, or Retry-After.

Jitter spreads the retries of many deliveries that failed together (a receiver that
was down), so they do not all return at the same second.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from email.utils import parsedate_to_datetime

JITTER = 0.2
MAX_DELAY_S = 3600.0  # the broker holds scheduled messages; keep them well within its limits
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(moment.timestamp() - now, 0.0)


def next_delay(attempts_in_round: int, schedule: Sequence[float], status_code: int | None,
               retry_after: str | None = None, rand: Callable[[], float] = random.random,
               now: Callable[[], float] = time.time) -> float | None:
    """Seconds until the next attempt after `attempts_in_round` failed ones; None: stop."""
    if status_code == GONE or attempts_in_round > len(schedule):
        return None
    if status_code in RETRY_AFTER_STATUSES:
        wait = parse_retry_after(retry_after, now())
        if wait is not None:
            return min(wait, MAX_DELAY_S)
    base = schedule[attempts_in_round - 1]
    return min(base * (1 + JITTER * (2 * rand() - 1)), MAX_DELAY_S)
