"""Lifecycle hooks that meter finished jobs: per-build metrics and the usage ledger.

Both fold a job in once per job id, so a job finished twice (a redelivery, a cancel
racing the worker) counts once. They run before the job's fair-share slot is given
back, so a finished job still holding its slot may have lost its worker before it was
metered: the lease reaper's repair pass meters it then (`metered_status`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import redis

from algohost.config import Settings
from algohost.store import CHAIN_ERROR, ScriptChain, lua
from algohost.store.fairshare import FairShare
from algohost.store.jobs import JobRecord, JobStore
from algohost.store.metrics import BuildMetrics
from algohost.store.usage import UsageLedger

log = logging.getLogger(__name__)


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


class FinishHook:
    """A finished job metered (its build's metrics, its usage entry) and its fair-share
    slot given back, in that order, in one round trip (ScriptChain), instead of a hook
    and a script call each. The release's answer goes to FairShare.hand_on."""

    def __init__(self, client: redis.Redis, metrics: BuildMetrics, usage: UsageLedger,
                 fair: FairShare) -> None:
        self.metrics, self.usage, self.fair = metrics, usage, fair
        self._all = ScriptChain(client, lua(BuildMetrics.SOURCE), lua(UsageLedger.SOURCE),
                                FairShare.RELEASE_SOURCE)
        self._unbuilt = ScriptChain(client, lua(UsageLedger.SOURCE), FairShare.RELEASE_SOURCE)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings,
                      fair: FairShare) -> FinishHook:
        return cls(client, BuildMetrics.from_settings(client, settings),
                   UsageLedger.from_settings(client, settings), fair)

    @property
    def metering(self) -> list[MetricsHook | UsageHook]:
        """The same metering as separate hooks, for the repair pass (`metered_status`)."""
        return [MetricsHook(self.metrics), UsageHook(self.usage)]

    def job_started(self, job: JobRecord) -> None:
        pass

    def job_finished(self, job: JobRecord) -> None:
        fold = self.metrics.fold_call(job)
        calls = [self.usage.entry_call(job), self.fair.release_call(job.owner, job.id)]
        results = self._all([fold, *calls]) if fold is not None else self._unbuilt(calls)
        for result in results:
            if isinstance(result, str) and result.startswith(CHAIN_ERROR):
                log.error("finishing job %s: %s", job.id, result)
        admitted = results[-1]
        self.fair.hand_on(job.owner, list(admitted) if isinstance(admitted, list) else [])


def metered_status(jobs: JobStore, hooks: Sequence[MetricsHook | UsageHook]
                   ) -> Callable[[str], str | None]:
    """The job status the fair-share repair asks for, metering a finished job on the way:
    one found holding its slot may have lost its worker between its terminal write and
    its hooks (or been failed by the lease reaper, which runs no hooks)."""

    def status_of(job_id: str) -> str | None:
        status = jobs.status(job_id)
        record = jobs.get(job_id) if status is not None and status.terminal else None
        if record is not None:
            for hook in hooks:
                try:
                    hook.job_finished(record)
                except Exception:  # the slot is given back all the same
                    log.exception("metering job %s in the repair pass failed", job_id)
        return None if status is None else status.value

    return status_of
