"""Per-build metrics of finished jobs: aggregates of bounded size, merged at read.

Each finished job is folded once (a marker per job id, set in the same script) into its
build's hashes for the hour and the day it finished and for the build's whole life:
counts by status, cold starts, log-spaced histograms of run_ms, total_ms and peak
memory, and the reported metrics' count, sum, min and max. A hash's size is bounded by
its buckets, never by its calls; a read merges one hash (all time) or at most 23 hours
and the retained days, so a build with a million calls answers as fast as one with ten.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from algohost.clock import parse_iso
from algohost.config import Settings
from algohost.store import PREFIX, ScriptCall, lua, translate_errors
from algohost.store.jobs import JobRecord, JobStatus

HOUR_S = 3600
DAY_S = 86400
MAX_REPORTED_PER_HASH = 64  # distinct reported names a build keeps per hour, day and in all
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class LogBuckets:
    """Bucket i > 0 holds values in (floor·growth^(i-1), floor·growth^i]; bucket 0 all
    values at or under floor. A percentile read from them is within growth-1 of the truth."""

    floor: float
    growth: float = 1.05
    top: int = 1000  # values past the last bucket fall into it

    def index(self, value: float) -> int:
        if value <= self.floor:
            return 0
        return min(math.ceil(math.log(value / self.floor) / math.log(self.growth)), self.top)

    def value(self, index: int) -> float:
        """A bucket's representative: its geometric middle (bucket 0's: the floor)."""
        return self.floor if index == 0 else self.floor * self.growth ** (index - 0.5)


MS_BUCKETS = LogBuckets(floor=0.01)  # 10 µs .. past an hour
BYTE_BUCKETS = LogBuckets(floor=1024.0)  # 1 KiB .. past 64 GiB
HISTOGRAMS = {"run_ms": ("r", MS_BUCKETS), "total_ms": ("t", MS_BUCKETS),
              "peak_memory_bytes": ("m", BYTE_BUCKETS)}
STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELED)


@dataclass
class Distribution:
    count: int = 0
    mean: float = 0.0
    max: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0


@dataclass
class Reported:
    count: int
    mean: float
    min: float
    max: float


@dataclass
class BuildSummary:
    """What a build's finished jobs came to, over the hours read."""

    build_id: str
    calls: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    cold_starts: int = 0
    run_ms: Distribution = field(default_factory=Distribution)
    total_ms: Distribution = field(default_factory=Distribution)
    peak_memory_bytes: Distribution = field(default_factory=Distribution)
    reported: dict[str, Reported] = field(default_factory=dict)

    def rate(self, status: JobStatus) -> float:
        return self.statuses.get(status.value, 0) / self.calls if self.calls else 0.0

    @property
    def cold_start_share(self) -> float:
        return self.cold_starts / self.calls if self.calls else 0.0


def job_fields(job: JobRecord) -> tuple[dict[str, int], dict[str, float], dict[str, float]]:
    """One job's contribution: integer increments, float increments and maxima."""
    metrics: Mapping[str, Any] = job.metrics or {}
    counts = {"calls": 1, f"s:{job.status.value}": 1}
    if job.warm is False:
        counts["cold"] = 1
    sums: dict[str, float] = {}
    maxima: dict[str, float] = {}
    for name, (tag, buckets) in HISTOGRAMS.items():
        if name not in metrics:
            continue  # never measured (the reaper failed it with worker_lost): no sample
        value = float(metrics.get(name) or 0.0)
        if name == "peak_memory_bytes" and value <= 0:
            continue  # never measured (the call did not start): no sample
        counts[f"{tag}:{buckets.index(value)}"] = 1
        counts[f"{tag}#"] = 1
        sums[f"{tag}+"] = value
        maxima[f"{tag}^"] = value
    return counts, sums, maxima


def _pairs(values: Mapping[str, Any]) -> list[str]:
    flat = [str(len(values))]
    for name, value in values.items():
        flat += [name, repr(value)]
    return flat


class BuildMetrics:
    def __init__(self, client: redis.Redis, retention_s: int, marker_s: int) -> None:
        self.redis: Any = client
        self.retention_s, self.marker_s = retention_s, marker_s
        self._fold = client.register_script(lua("build_metrics"))

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> BuildMetrics:
        # A job's marker lives as long as its record: a job can finish again only then.
        return cls(client, settings.metrics_retention_days * 24 * HOUR_S,
                   settings.job_retention_s)

    @staticmethod
    def hour_key(build_id: str, hour: int) -> str:
        return f"{PREFIX}metrics:{build_id}:h:{hour}"

    @staticmethod
    def day_key(build_id: str, day: int) -> str:
        return f"{PREFIX}metrics:{build_id}:d:{day}"

    @staticmethod
    def life_key(build_id: str) -> str:
        return f"{PREFIX}metrics:{build_id}:all"

    @staticmethod
    def hours_key(build_id: str) -> str:
        return f"{PREFIX}metrics:{build_id}:hours"

    @staticmethod
    def days_key(build_id: str) -> str:
        return f"{PREFIX}metrics:{build_id}:days"

    @staticmethod
    def marker_key(job_id: str) -> str:
        return f"{PREFIX}metrics:job:{job_id}"

    @translate_errors
    def record(self, job: JobRecord) -> bool:
        """Fold a finished job into its build's aggregates; False when it was folded in
        before."""
        call = self.fold_call(job)
        return call is not None and bool(self._fold(keys=call.keys, args=call.args) == 1)

    SOURCE = "build_metrics"  # the script fold_call's arguments are for

    def fold_call(self, job: JobRecord) -> ScriptCall | None:
        """The script call `record` makes, to send with others; None: nothing to fold."""
        if not job.build_id or not job.status.terminal:
            return None
        finished = parse_iso(job.finished_at) if job.finished_at else 0.0
        hour, day = int(finished // HOUR_S * HOUR_S), int(finished // DAY_S * DAY_S)
        counts, sums, maxima = job_fields(job)
        args = [str(self.marker_s), str(self.retention_s), str(hour), str(day),
                str(MAX_REPORTED_PER_HASH), *_pairs(counts), *_pairs(sums), *_pairs(maxima),
                *_pairs(job.custom_metrics)]
        b = job.build_id
        keys = [self.marker_key(job.id), self.hour_key(b, hour), self.day_key(b, day),
                self.life_key(b), self.hours_key(b), self.days_key(b)]
        return ScriptCall(keys, args)

    @translate_errors
    def summary(self, build_id: str, since: float | None = None) -> BuildSummary:
        """The build's jobs that finished in the hour of `since` or later (all when None):
        the hours up to the next midnight, then whole days, so at most 23 hours and the
        retained days are read, however many calls they hold."""
        if since is None:
            return summarise(build_id, [self.redis.hgetall(self.life_key(build_id))])
        start = int(since // HOUR_S * HOUR_S)
        midnight = -(-start // DAY_S) * DAY_S
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrangebyscore(self.hours_key(build_id), start, midnight - 1)
        pipe.zrangebyscore(self.days_key(build_id), midnight, "+inf")
        hours, days = pipe.execute()
        for hour in hours:
            pipe.hgetall(self.hour_key(build_id, int(hour)))
        for day in days:
            pipe.hgetall(self.day_key(build_id, int(day)))
        return summarise(build_id, pipe.execute() if hours or days else [])

    @translate_errors
    def hourly(self, build_id: str, since: float = 0.0) -> list[tuple[int, BuildSummary]]:
        """Each hour of the build from the hour of `since` on, oldest first, on its own
        (what a chart over time draws)."""
        start = int(since // HOUR_S * HOUR_S)
        hours = [int(h) for h in self.redis.zrangebyscore(self.hours_key(build_id), start,
                                                           "+inf")]
        pipe = self.redis.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(self.hour_key(build_id, hour))
        found = pipe.execute() if hours else []
        return [(hour, summarise(build_id, [raw])) for hour, raw in zip(hours, found, strict=True)]


def merge(hashes: Iterable[Mapping[str, str]]) -> dict[str, float]:
    """Hourly hashes as one: counts and sums added, maxima and minima kept."""
    merged: dict[str, float] = {}
    for raw in hashes:
        for name, text in raw.items():
            value = float(text)
            if name.endswith(("^", ":max")):
                merged[name] = max(merged.get(name, value), value)
            elif name.endswith(":min"):
                merged[name] = min(merged.get(name, value), value)
            else:
                merged[name] = merged.get(name, 0.0) + value
    return merged


def summarise(build_id: str, hashes: Iterable[Mapping[str, str]]) -> BuildSummary:
    merged = merge(hashes)
    summary = BuildSummary(build_id, calls=int(merged.get("calls", 0)),
                           cold_starts=int(merged.get("cold", 0)))
    summary.statuses = {s.value: int(merged.get(f"s:{s.value}", 0)) for s in STATUSES}
    summary.run_ms = distribution(merged, "r", MS_BUCKETS)
    summary.total_ms = distribution(merged, "t", MS_BUCKETS)
    summary.peak_memory_bytes = distribution(merged, "m", BYTE_BUCKETS)
    for name in sorted(merged):
        if name.startswith("c:") and name.endswith(":n"):
            metric = name[2:-2]
            count = int(merged[name])
            summary.reported[metric] = Reported(
                count=count, mean=merged.get(f"c:{metric}:sum", 0.0) / max(count, 1),
                min=merged.get(f"c:{metric}:min", 0.0), max=merged.get(f"c:{metric}:max", 0.0))
    return summary


def distribution(merged: Mapping[str, float], tag: str, buckets: LogBuckets) -> Distribution:
    count = int(merged.get(f"{tag}#", 0))
    if count == 0:
        return Distribution()
    top = merged.get(f"{tag}^", 0.0)
    counts = sorted((int(name[len(tag) + 1:]), int(value)) for name, value in merged.items()
                    if name.startswith(f"{tag}:"))
    found = {}
    for p in PERCENTILES:
        rank, seen = math.ceil(p / 100 * count), 0
        for index, n in counts:
            seen += n
            if seen >= rank:
                found[p] = min(buckets.value(index), top)  # never past the largest seen
                break
    return Distribution(count=count, mean=merged.get(f"{tag}+", 0.0) / count, max=top,
                        p50=found.get(50, top), p95=found.get(95, top), p99=found.get(99, top))
