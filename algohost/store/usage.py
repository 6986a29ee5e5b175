"""The usage ledger: one entry per finished job, and per-day totals for payer and payee.

An entry is keyed by its job id and written in the same script that adds it to the
totals, so a job counted twice counts once. Amounts are integers (microseconds,
MiB-milliseconds, micro-units of money) so that totals equal the sum of the job
records exactly. Compute and memory are the worker's measurements, never the
container's own figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import redis

from algohost.clock import parse_iso
from algohost.config import Settings
from algohost.errors import BudgetExhausted
from algohost.names import AlgorithmRef
from algohost.store import (
    PREFIX,
    ScriptCall,
    decode_value,
    encode_fields,
    lua,
    translate_errors,
)
from algohost.store.jobs import JobRecord
from algohost.store.limits import LimitStore

MiB = 1024 * 1024
COUNTERS = ("calls", "compute_us", "memory_mib_ms", "royalty_micros")
MAX_DAYS = 366  # days one read may span


@dataclass(frozen=True)
class UsageEntry:
    """What one finished job used: the caller pays, the algorithm's owner is paid."""

    job_id: str
    payer: str
    payee: str
    algorithm: str  # owner/name
    version: str
    day: str  # YYYY-MM-DD (UTC) the job finished
    status: str
    calls: int
    compute_us: int  # the call's run time as the worker timed it
    memory_mib_ms: int  # peak memory (cgroup) × run time
    royalty_micros: int

    @classmethod
    def of(cls, job: JobRecord) -> UsageEntry:
        ref = AlgorithmRef.parse(job.algorithm)
        metrics: dict[str, Any] = dict(job.metrics or {})
        run_ms = float(metrics.get("run_ms") or 0.0)
        peak = int(metrics.get("peak_memory_bytes") or 0)
        return cls(job_id=job.id, payer=job.owner, payee=ref.owner, algorithm=ref.base,
                   version=ref.version or "", day=day_of(job.finished_at), status=job.status,
                   calls=1, compute_us=round(run_ms * 1000), memory_mib_ms=round(
                       peak * run_ms / MiB), royalty_micros=max(int(job.royalty_micros), 0))

    @property
    def counters(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTERS}


def day_of(iso: str | None) -> str:
    moment = datetime.fromtimestamp(parse_iso(iso), tz=UTC) if iso else datetime.now(UTC)
    return moment.date().isoformat()


@dataclass
class UsageRow:
    """Totals of one day and one algorithm version, for a payer or a payee."""

    day: str
    algorithm: str
    version: str
    calls: int = 0
    compute_us: int = 0
    memory_mib_ms: int = 0
    royalty_micros: int = 0


ROLES = ("payer", "payee")


class UsageLedger:
    def __init__(self, client: redis.Redis, entry_s: int, retention_s: int) -> None:
        self.redis: Any = client
        self.entry_s, self.retention_s = entry_s, retention_s
        self._write = client.register_script(lua("usage_entry"))

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> UsageLedger:
        # Entries live as long as the job records they repeat; day totals far longer.
        return cls(client, settings.job_retention_s, settings.usage_retention_days * 86400)

    @staticmethod
    def entry_key(job_id: str) -> str:
        return f"{PREFIX}usage:job:{job_id}"

    @staticmethod
    def day_key(role: str, owner: str, day: str) -> str:
        return f"{PREFIX}usage:{role}:{owner}:{day}"

    @translate_errors
    def record(self, job: JobRecord) -> bool:
        """Add a finished job's entry; False when it has one already."""
        call = self.entry_call(job)
        return bool(self._write(keys=call.keys, args=call.args) == 1)

    SOURCE = "usage_entry"  # the script entry_call's arguments are for

    def entry_call(self, job: JobRecord) -> ScriptCall:
        """The script call `record` makes, to send with others."""
        entry = UsageEntry.of(job)
        args = [str(self.entry_s), str(self.retention_s),
                f"{entry.algorithm}@{entry.version}", str(len(COUNTERS))]
        for name, amount in entry.counters.items():
            args += [name, str(amount)]
        for name, value in encode_fields(asdict(entry)).items():
            args += [name, value]
        keys = [self.entry_key(job.id), self.day_key("payer", entry.payer, entry.day),
                self.day_key("payee", entry.payee, entry.day)]
        return ScriptCall(keys, args)

    @translate_errors
    def entry(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(self.entry_key(job_id))
        return {k: decode_value(v) for k, v in raw.items()} if raw else None

    @translate_errors
    def compute_us_on(self, owner: str, day: str) -> int:
        """What `owner` spent as a payer on `day`: the figure budgets compare."""
        return int(self.redis.hget(self.day_key("payer", owner, day), "*|compute_us") or 0)

    @translate_errors
    def rows(self, owner: str, role: str, first: date, last: date) -> list[UsageRow]:
        """Per-day, per-version totals of `owner` as payer or payee, oldest day first."""
        if role not in ROLES:
            raise ValueError(f"role is one of {ROLES}, not {role!r}")
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)][:MAX_DAYS]
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(self.day_key(role, owner, day.isoformat()))
        found: list[UsageRow] = []
        for day, raw in zip(days, pipe.execute() if days else [], strict=True):
            found += _rows_of(day.isoformat(), raw.items())
        return found


def _rows_of(day: str, fields: Iterable[tuple[str, str]]) -> list[UsageRow]:
    rows: dict[str, UsageRow] = {}
    for name, value in fields:
        group, _, counter = name.rpartition("|")
        if group == "*" or counter not in COUNTERS:
            continue
        algorithm, _, version = group.partition("@")
        row = rows.setdefault(group, UsageRow(day, algorithm, version))
        setattr(row, counter, int(value))
    return [rows[group] for group in sorted(rows)]


class ComputeBudget:
    """Refuses an owner's new calls once it has spent its compute-seconds for the UTC day.

    What is spent is what finished: calls under way when the budget runs out still end
    and are billed, so a day's total may pass the budget by what they use."""

    def __init__(self, ledger: UsageLedger, limits: LimitStore,
                 today: Callable[[], date] = lambda: datetime.now(UTC).date()) -> None:
        self.ledger, self.limits, self.today = ledger, limits, today

    def spent_s(self, owner: str) -> float:
        return self.ledger.compute_us_on(owner, self.today().isoformat()) / 1e6

    def check(self, owner: str) -> None:
        budget = self.limits.for_owner(owner).compute_s_per_day
        if budget <= 0:
            return
        spent = self.spent_s(owner)
        if spent >= budget:
            resets = (self.today() + timedelta(days=1)).isoformat() + "T00:00:00Z"
            raise BudgetExhausted(
                f"{owner} has spent {spent:.3f} of its {budget:g} compute-seconds for today; "
                f"calls are accepted again from {resets}",
                owner=owner, spent_s=round(spent, 6), budget_s=budget, resets_at=resets)
