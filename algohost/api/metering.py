"""Build metrics side by side, and usage: `GET /v1/algorithms/{owner}/{name}/metrics` and
`GET /v1/usage`. Read-only: both are written by the workers' lifecycle hooks as jobs finish.

Each answer reads a bounded number of aggregates (hours of a build, days of an owner),
never the job records, so it costs the same for ten calls or a million.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from flask import Blueprint
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from algohost.api.access import owned_algorithm
from algohost.api.auth import current_owner
from algohost.api.context import services
from algohost.api.routing import Reply, route
from algohost.clock import iso
from algohost.errors import AlgorithmNotFound
from algohost.names import VERSION, validate_algorithm_name, validate_owner
from algohost.reports import (
    AlgorithmMetrics,
    UsageBudget,
    UsageReport,
    build_metrics_view,
    total_line,
    usage_lines,
)
from algohost.store.metrics import HOUR_S
from algohost.store.registry import BuildStatus
from algohost.store.usage import MAX_DAYS

bp = Blueprint("metering", __name__)

MAX_VERSIONS = 20
DEFAULT_VERSIONS = 10
_V = VERSION.pattern.pattern
VERSIONS_PATTERN = rf"^{_V}(?:,{_V}){{0,{MAX_VERSIONS - 1}}}$"
GROUP_BY_PATTERN = r"^(?:(?:day|algorithm|version)(?:,(?:day|algorithm|version)){0,2})?$"
SPAN_PATTERN = r"^[0-9]{1,4}[mhd]$"
SPAN_S = {"m": 60, "h": 3600, "d": 86400}
# RFC 3339, as JSON Schema's formats mean it; Python's own parsers take more ("0" as a date)
# or less (a leap second, year 0), so the text is matched here and then read.
_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_MOMENT = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}):([0-9]{2})"
                     r"(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})")


def _day(value: object) -> date:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise ValueError("a day is YYYY-MM-DD")
    if value.startswith("0000"):
        return date.min  # RFC 3339 has a year 0; Python's calendar starts at 1
    return date.fromisoformat(value)


def _moment(value: object) -> object:
    if not isinstance(value, str) or SPAN.fullmatch(value):
        return value
    if _DAY.fullmatch(value):
        return datetime.combine(_day(value), datetime.min.time(), tzinfo=UTC)
    found = _MOMENT.fullmatch(value)
    if not found:
        raise ValueError("a time is RFC 3339 (2026-03-01T12:00:00Z), a day (2026-03-01) "
                         "or a span (24h)")
    day, minutes, seconds, fraction, zone = found.groups()
    if day.startswith("0000"):
        return datetime.min.replace(tzinfo=UTC)
    seconds = min(seconds, "59")  # a leap second counts as the second before it
    zone = "+00:00" if zone in ("Z", "z") else zone
    return datetime.fromisoformat(f"{day}T{minutes}:{seconds}{(fraction or '')[:7]}{zone}")


SPAN = re.compile(SPAN_PATTERN[1:-1])
Day = Annotated[date, BeforeValidator(_day),
                WithJsonSchema({"type": "string", "format": "date"})]
Since = Annotated[datetime | str, BeforeValidator(_moment), WithJsonSchema(
    {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"},
               {"type": "string", "pattern": SPAN_PATTERN}]})]


class MetricsQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    versions: str | None = Field(
        default=None, pattern=VERSIONS_PATTERN,
        description=f"Comma-separated exact versions, at most {MAX_VERSIONS}; by default the "
                    f"newest {DEFAULT_VERSIONS} successful builds")
    since: Since | None = Field(
        default=None,
        description="Only jobs that finished in this hour or later: an RFC 3339 time, a day "
                    "(from its midnight, UTC) or a span back from now, like 30m, 24h, 7d")


class UsageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    group_by: str = Field(default="day,algorithm", pattern=GROUP_BY_PATTERN,
                          description="Comma-separated: day, algorithm, version; empty for "
                                      "one total")
    since: Day | None = Field(default=None, description="First day (UTC); by default 29 "
                               f"days before `until`, and at most {MAX_DAYS - 1} before it")
    until: Day | None = Field(default=None, description="Last day (UTC); by default today")
    role: Literal["payer", "payee"] = Field(
        default="payer", description="payer: your calls; payee: calls of your algorithms")


def since_epoch(since: datetime | str, now: float) -> float:
    if isinstance(since, str):
        return now - int(since[:-1]) * SPAN_S[since[-1]]
    try:
        return (since if since.tzinfo else since.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):  # before year 1 once its offset applies
        return 0.0


def days_back(last: date, days: int) -> date:
    try:
        return last - timedelta(days=days)
    except OverflowError:
        return date.min


@route(bp, "GET", "/v1/algorithms/<owner>/<name>/metrics",
       summary="Metrics of an algorithm's builds, side by side", query=MetricsQuery,
       responses={200: AlgorithmMetrics}, errors=(403, 404))
def algorithm_metrics(owner: str, name: str, query: MetricsQuery) -> Reply:
    owned_algorithm(owner, name)  # the author's alone; a private one is 404 to others
    validate_owner(owner)
    validate_algorithm_name(name)
    svc = services()
    assert svc.metrics is not None
    if not svc.registry.exists(owner, name):
        raise AlgorithmNotFound(f"algorithm {owner}/{name} does not exist")
    if query.versions:
        builds = [svc.registry.find(owner, name, v)
                  for v in dict.fromkeys(query.versions.split(","))]
    else:
        builds = [b for b in svc.registry.versions(owner, name)
                  if b.status is BuildStatus.SUCCEEDED][:DEFAULT_VERSIONS]
    since = since_epoch(query.since, time.time()) if query.since is not None else None
    return Reply(AlgorithmMetrics(
        algorithm=f"{owner}/{name}",
        since=None if since is None else iso(since // HOUR_S * HOUR_S),
        builds=[build_metrics_view(b.version, svc.metrics.summary(b.id, since))
                for b in builds]))


@route(bp, "GET", "/v1/usage", summary="What your calls used, or what calls of your "
       "algorithms used, by day, algorithm and version", query=UsageQuery,
       responses={200: UsageReport})
def usage(query: UsageQuery) -> Reply:
    svc = services()
    assert svc.usage is not None and svc.budget is not None
    owner = current_owner()
    last = query.until or datetime.now(UTC).date()
    # The reply names the days it read: a span too long starts later; none when since > until.
    first = max(query.since or days_back(last, 29), days_back(last, MAX_DAYS - 1))
    group_by = [g for g in query.group_by.split(",") if g]
    lines = usage_lines(svc.usage.rows(owner, query.role, first, last), group_by)
    return Reply(UsageReport(
        owner=owner, role=query.role, since=first.isoformat(), until=last.isoformat(),
        group_by=group_by, lines=lines, total=total_line(lines),
        budget=UsageBudget(compute_s_per_day=svc.limits.for_owner(owner).compute_s_per_day,
                           spent_today_s=svc.budget.spent_s(owner))))
