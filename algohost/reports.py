"""What a caller sees of build metrics and usage: one definition for the API's replies and
the command line, which reads replies into these same models. Free of Flask.

Usage amounts are exact integers (microseconds, MiB-milliseconds, micro-units of money);
the seconds beside them are those integers scaled, for reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from algohost.store.jobs import JobStatus
from algohost.store.metrics import BuildSummary, Distribution
from algohost.store.usage import UsageRow

# Build metrics ---------------------------------------------------------------------------


class Percentiles(BaseModel):
    p50: float
    p95: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, found: Distribution) -> Percentiles:
        return cls(p50=found.p50, p95=found.p95, p99=found.p99, mean=found.mean, max=found.max)


class ReportedView(BaseModel):
    count: int = Field(description="Calls that reported it")
    mean: float
    min: float
    max: float


class BuildMetricsView(BaseModel):
    version: str
    build_id: str
    calls: int = Field(description="Finished jobs of this build")
    succeeded: int
    failed: int
    timed_out: int
    canceled: int
    error_rate: float = Field(description="failed / calls")
    timeout_rate: float = Field(description="timed_out / calls")
    cold_start_share: float = Field(description="Calls that started a container / calls")
    run_ms: Percentiles = Field(description="The call in its container, timed by the worker "
                                "(percentiles from log-spaced buckets, within 5%)")
    total_ms: Percentiles = Field(description="From submit to finish")
    peak_memory_bytes: Percentiles = Field(description="Peak memory of the call (cgroup)")
    custom: dict[str, ReportedView] = Field(
        default_factory=dict, description="What the algorithm reported with log_metric")


class AlgorithmMetrics(BaseModel):
    algorithm: str = Field(description="owner/name")
    since: str | None = Field(description="Jobs that finished in this hour or later (UTC)")
    builds: list[BuildMetricsView]


def build_metrics_view(version: str, summary: BuildSummary) -> BuildMetricsView:
    statuses = summary.statuses
    return BuildMetricsView(
        version=version, build_id=summary.build_id, calls=summary.calls,
        succeeded=statuses.get("succeeded", 0), failed=statuses.get("failed", 0),
        timed_out=statuses.get("timed_out", 0), canceled=statuses.get("canceled", 0),
        error_rate=summary.rate(JobStatus.FAILED), timeout_rate=summary.rate(JobStatus.TIMED_OUT),
        cold_start_share=summary.cold_start_share, run_ms=Percentiles.of(summary.run_ms),
        total_ms=Percentiles.of(summary.total_ms),
        peak_memory_bytes=Percentiles.of(summary.peak_memory_bytes),
        custom={name: ReportedView(count=r.count, mean=r.mean, min=r.min, max=r.max)
                for name, r in summary.reported.items()})


# Usage -----------------------------------------------------------------------------------

GROUPS = ("day", "algorithm", "version")


class UsageLine(BaseModel):
    day: str | None = Field(default=None, description="YYYY-MM-DD (UTC), when grouped by day")
    algorithm: str | None = Field(default=None, description="owner/name, when grouped by it")
    version: str | None = Field(default=None, description="When grouped by version")
    calls: int
    compute_us: int = Field(description="The calls' run time as the worker timed it, in µs")
    memory_mib_ms: int = Field(description="Peak memory × run time, in MiB-milliseconds")
    royalty_micros: int = Field(description="Owed by the payer to the algorithm's owner")
    compute_s: float
    memory_mib_s: float


class UsageBudget(BaseModel):
    compute_s_per_day: float = Field(description="0: no budget")
    spent_today_s: float


class UsageReport(BaseModel):
    owner: str
    role: str = Field(description="payer: what your calls used; payee: what calls of your "
                      "algorithms used (and owe you)")
    since: str
    until: str
    group_by: list[str]
    lines: list[UsageLine]
    total: UsageLine
    budget: UsageBudget


def usage_lines(rows: Iterable[UsageRow], group_by: Sequence[str]) -> list[UsageLine]:
    """Rows summed within each group; groups in order of their keys."""
    sums: dict[tuple[str, ...], list[int]] = {}
    for row in rows:
        key = tuple(_key(row, name) for name in GROUPS if name in group_by)
        found = sums.setdefault(key, [0, 0, 0, 0])
        for n, amount in enumerate((row.calls, row.compute_us, row.memory_mib_ms,
                                    row.royalty_micros)):
            found[n] += amount
    chosen = [name for name in GROUPS if name in group_by]
    return [usage_line(dict(zip(chosen, key, strict=True)), *amounts)
            for key, amounts in sorted(sums.items())]


def _key(row: UsageRow, name: str) -> str:
    return str(getattr(row, name))


def usage_line(groups: dict[str, str], calls: int, compute_us: int, memory_mib_ms: int,
               royalty_micros: int) -> UsageLine:
    return UsageLine(**groups, calls=calls, compute_us=compute_us, memory_mib_ms=memory_mib_ms,
                     royalty_micros=royalty_micros, compute_s=compute_us / 1e6,
                     memory_mib_s=memory_mib_ms / 1e3)


def total_line(lines: Iterable[UsageLine]) -> UsageLine:
    listed = list(lines)
    return usage_line({}, sum(line.calls for line in listed),
                      sum(line.compute_us for line in listed),
                      sum(line.memory_mib_ms for line in listed),
                      sum(line.royalty_micros for line in listed))
