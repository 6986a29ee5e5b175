"""Lifecycle hooks that meter finished jobs: per-build metrics and the usage ledger.

Both fold a job in once per job id, so a job finished twice (a redelivery, a cancel
racing the worker) counts once. A hook's failure is logged by the runner and never
loses the job's result.
"""

from __future__ import annotations

import redis

from algohost.config import Settings
from algohost.store.jobs import JobRecord
from algohost.store.metrics import BuildMetrics
from algohost.store.usage import UsageLedger


class MetricsHook:
    def __init__(self, metrics: BuildMetrics) -> None:
        self.metrics = metrics

    def job_started(self, job: JobRecord) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        self.metrics.record(job)


class UsageHook:
    def __init__(self, ledger: UsageLedger) -> None:
        self.ledger = ledger

    def job_started(self, job: JobRecord) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        self.ledger.record(job)


def metering_hooks(client: redis.Redis, settings: Settings) -> list[MetricsHook | UsageHook]:
    """The hooks every job runner takes to meter what it finishes."""
    return [MetricsHook(BuildMetrics.from_settings(client, settings)),
            UsageHook(UsageLedger.from_settings(client, settings))]
