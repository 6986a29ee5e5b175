"""Time as algohost records it: ISO-8601 UTC strings with milliseconds.

Kept in one place so every record, metric and test speaks the same format.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_iso() -> str:
    return iso(time.time())


def iso(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str) -> float:
    # fromisoformat reads the trailing Z since Python 3.11, far faster than strptime.
    return datetime.fromisoformat(text).timestamp()


def ms_between(start_iso: str | None, end_iso: str | None) -> float:
    if not start_iso or not end_iso:
        return 0.0
    return round((parse_iso(end_iso) - parse_iso(start_iso)) * 1000, 3)
