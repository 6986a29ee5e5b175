"""Batch inputs metered as jobs are: into the usage ledger and the build's metrics.

An input is not a job, so it has no job id to key an entry by. It is metered inside the
script that stores its result, which stores each input's result once (HSETNX): a chunk
run twice, or a flush repeated, meters nothing twice, and one script call meters a whole
flush. Only inputs the worker measured (they reached a container: succeeded, failed or
timed out there) are metered; inputs canceled, or failed before they ran (the build gone,
the worker lost), are neither billed nor counted as calls. The batch has one ledger entry,
`usage:batch:{id}`, whose counters are the sums of its metered inputs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from algohost.clock import parse_iso
from algohost.config import Settings
from algohost.names import AlgorithmRef
from algohost.store import PREFIX
from algohost.store.batches import BatchRecord, ChunkMeter, ItemResult
from algohost.store.metrics import BYTE_BUCKETS, DAY_S, HOUR_S, MS_BUCKETS, BuildMetrics
from algohost.store.usage import MiB, UsageLedger, day_of


def figures(results: Iterable[ItemResult]) -> tuple[list[str], list[str]]:
    """A flush's sums (what UsageEntry.of and job_fields take of a job, added up over the
    inputs that ran) and each input's own figures, which the script reads only when some
    input of the flush was stored before."""
    calls = compute = memory = 0
    run_sum = peak_sum = 0.0
    run_max: float | None = None
    peak_max: int | None = None
    counts: dict[str, int] = {}
    own: list[str] = []
    peak_buckets: dict[int, str] = {}  # a warm container's peak is often the same figure
    for result in results:
        metrics: Any = result.get("metrics")
        if not metrics:
            own.append("")
            continue
        run_ms = float(metrics.get("run_ms") or 0.0)
        peak = int(metrics.get("peak_memory_bytes") or 0)
        us, mib_ms = round(run_ms * 1000), round(peak * run_ms / MiB)
        calls, compute, memory = calls + 1, compute + us, memory + mib_ms
        status = "s:" + result["status"]
        counts[status] = counts.get(status, 0) + 1
        run_bucket = f"r:{MS_BUCKETS.index(run_ms)}"
        counts[run_bucket] = counts.get(run_bucket, 0) + 1
        run_sum += run_ms
        run_max = run_ms if run_max is None else max(run_max, run_ms)
        peak_bucket = "-"
        if peak > 0:
            peak_bucket = peak_buckets.get(peak) or peak_buckets.setdefault(
                peak, str(BYTE_BUCKETS.index(peak)))
            counts["m:" + peak_bucket] = counts.get("m:" + peak_bucket, 0) + 1
            peak_sum += peak
            peak_max = peak if peak_max is None else max(peak_max, peak)
        own.append(f"{us} {mib_ms} {run_bucket[2:]} {run_ms!r} {peak_bucket} {peak}")
    if calls:
        counts["r#"] = calls
    if peak_max is not None:
        counts["m#"] = sum(n for name, n in counts.items() if name.startswith("m:"))
    sums = [str(calls), str(compute), str(memory), repr(run_sum),
            "" if run_max is None else repr(run_max), repr(peak_sum),
            "" if peak_max is None else str(peak_max), str(len(counts))]
    for name, n in counts.items():
        sums += [name, str(n)]
    return sums, own


@dataclass(frozen=True)
class BatchMetering:
    usage_ttl_s: int
    entry_ttl_s: int
    metrics_ttl_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchMetering:
        return cls(settings.usage_retention_days * DAY_S, settings.job_retention_s,
                   settings.metrics_retention_days * DAY_S)

    @staticmethod
    def entry_key(batch_id: str) -> str:
        return f"{PREFIX}usage:batch:{batch_id}"

    def meter(self, batch: BatchRecord, finished_at: str) -> ChunkMeter:
        """The meter of one flush of `batch`, dated `finished_at`."""
        ref = AlgorithmRef.parse(batch.algorithm)
        moment, day = parse_iso(finished_at), day_of(finished_at)
        hour, epoch_day = int(moment // HOUR_S * HOUR_S), int(moment // DAY_S * DAY_S)
        b = batch.build_id
        keys = [UsageLedger.day_key("payer", batch.owner, day),
                UsageLedger.day_key("payee", ref.owner, day), self.entry_key(batch.id),
                BuildMetrics.hour_key(b, hour), BuildMetrics.day_key(b, epoch_day),
                BuildMetrics.life_key(b), BuildMetrics.hours_key(b), BuildMetrics.days_key(b)]
        entry = {"batch_id": batch.id, "payer": batch.owner, "payee": ref.owner,
                 "algorithm": ref.base, "version": ref.version or ""}
        header = [str(self.usage_ttl_s), str(self.entry_ttl_s), str(self.metrics_ttl_s),
                  str(hour), str(epoch_day), f"{ref.base}@{ref.version or ''}",
                  str(max(int(batch.royalty_micros), 0)), str(len(entry))]
        for name, value in entry.items():
            header += [name, value]
        return ChunkMeter(keys, header, figures)


def batch_entry(client: redis.Redis, batch_id: str) -> dict[str, Any] | None:
    """The batch's usage entry: who pays whom and the sums of its metered inputs."""
    r: Any = client
    raw = r.hgetall(BatchMetering.entry_key(batch_id))
    if not raw:
        return None
    counters = ("calls", "compute_us", "memory_mib_ms", "royalty_micros")
    return {k: (int(v) if k in counters else v) for k, v in raw.items()}
