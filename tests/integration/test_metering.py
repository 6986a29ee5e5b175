"""Per-build metrics and the usage ledger against a real Redis, fed through the worker's
own lifecycle hooks with synthetic finishes (the real stack's are in test_metrics_api)."""

import random
from datetime import date

import pytest

from algohost.clock import parse_iso
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.metrics import MS_BUCKETS, BuildMetrics
from algohost.store.usage import MiB, UsageLedger
from algohost.worker.metering import MetricsHook, UsageHook, metered_status

DAY = "2026-03-0{}T{:02d}:15:00.000Z"


def finished(job_id, *, owner="alice", algorithm="alice/algo@0.1.0", build_id="b_1",
             status=JobStatus.SUCCEEDED, run_ms=10.0, total_ms=12.0, memory=64 * MiB,
             warm=True, day=1, hour=9, custom=None, royalty=0):
    return JobRecord(id=job_id, owner=owner, status=status, algorithm=algorithm,
                     build_id=build_id, finished_at=DAY.format(day, hour), warm=warm,
                     metrics={"queue_ms": 1.0, "cold_start_ms": 0.0, "run_ms": run_ms,
                              "total_ms": total_ms, "peak_memory_bytes": memory},
                     custom_metrics=custom or {}, royalty_micros=royalty)


@pytest.fixture
def metrics(redis_client):
    return BuildMetrics(redis_client, retention_s=10**9, marker_s=3600)


@pytest.fixture
def ledger(redis_client):
    return UsageLedger(redis_client, entry_s=3600, retention_s=10**9)


def test_percentiles_come_from_the_histogram_within_its_resolution(metrics):
    hook = MetricsHook(metrics)
    runs = [float(n) for n in range(1, 1001)]  # 1..1000 ms
    for n, run_ms in enumerate(runs):
        hook.job_finished(finished(f"j_{n}", run_ms=run_ms, total_ms=run_ms + 5))
    summary = metrics.summary("b_1")
    assert summary.calls == 1000 and summary.statuses["succeeded"] == 1000
    tolerance = MS_BUCKETS.growth - 1
    for p, truth in ((50, 500.0), (95, 950.0), (99, 990.0)):
        assert getattr(summary.run_ms, f"p{p}") == pytest.approx(truth, rel=tolerance)
    assert summary.run_ms.max == 1000.0 and summary.run_ms.mean == pytest.approx(500.5)
    assert summary.total_ms.p50 == pytest.approx(505.0, rel=tolerance)


def test_a_job_finished_twice_counts_once(metrics, ledger):
    job = finished("j_1", custom={"accuracy": 0.9})
    for _ in range(3):
        MetricsHook(metrics).job_finished(job)
        UsageHook(ledger).job_finished(job)
    assert metrics.summary("b_1").calls == 1
    assert metrics.summary("b_1").reported["accuracy"].count == 1
    rows = ledger.rows("alice", "payer", *days(1, 1))
    assert [(r.calls, r.compute_us) for r in rows] == [(1, 10_000)]


def test_rates_cold_starts_memory_and_reported_metrics_per_build(metrics):
    hook = MetricsHook(metrics)
    statuses = [JobStatus.SUCCEEDED] * 6 + [JobStatus.FAILED] * 2 + [JobStatus.TIMED_OUT] * 2
    for n, status in enumerate(statuses):
        hook.job_finished(finished(f"j_{n}", status=status, warm=n >= 3,
                                   memory=(n + 1) * MiB, custom={"loss": n / 10}))
    summary = metrics.summary("b_1")
    assert summary.rate(JobStatus.FAILED) == 0.2 and summary.rate(JobStatus.TIMED_OUT) == 0.2
    assert summary.cold_start_share == 0.3
    assert summary.peak_memory_bytes.max == 10 * MiB
    loss = summary.reported["loss"]
    assert (loss.count, loss.min, loss.max) == (10, 0.0, 0.9)
    assert loss.mean == pytest.approx(0.45)


def test_since_reads_the_hours_to_midnight_then_whole_days(metrics):
    hook = MetricsHook(metrics)
    for day in (1, 2, 3):
        for hour in range(24):
            slow = day > 1 or hour >= 12
            hook.job_finished(finished(f"j_{day}_{hour}", day=day, hour=hour,
                                       run_ms=100.0 if slow else 1.0))
    later = metrics.summary("b_1", since=parse_iso("2026-03-01T12:30:00Z"))
    assert later.calls == 12 + 48
    assert later.run_ms.p50 == pytest.approx(100.0, rel=0.05)
    assert metrics.summary("b_1", since=parse_iso("2026-03-03T00:00:00Z")).calls == 24
    assert metrics.summary("b_1", since=parse_iso("2026-03-03T23:00:00Z")).calls == 1
    assert metrics.summary("b_1", since=parse_iso("2026-02-01T00:00:00Z")).calls == 72
    assert metrics.summary("b_1").calls == 72


def test_reported_names_per_hour_are_bounded(metrics):
    hook = MetricsHook(metrics)
    for n in range(100):
        hook.job_finished(finished(f"j_{n}", custom={f"m{n}": 1.0}))
    summary = metrics.summary("b_1")
    assert summary.calls == 100
    assert len(summary.reported) == 64


def days(first, last):
    return date(2026, 3, first), date(2026, 3, last)


def test_ledger_sums_equal_the_job_records_over_thousands_of_jobs(ledger):
    rng = random.Random(13)
    hook = UsageHook(ledger)
    jobs = []
    for n in range(3000):
        owner = rng.choice(["alice", "bob"])
        version = rng.choice(["0.1.0", "0.2.0"])
        job = finished(f"j_{n}", owner=owner, algorithm=f"carol/algo@{version}",
                       run_ms=round(rng.uniform(0.1, 5000), 3), memory=rng.randint(1, 2**31),
                       day=rng.randint(1, 3), royalty=rng.choice([0, 150]),
                       status=rng.choice(list(JobStatus)[2:]))
        jobs.append(job)
        hook.job_finished(job)
        if n % 7 == 0:
            hook.job_finished(job)  # a redelivered finish counts once
    for owner in ("alice", "bob"):
        mine = [j for j in jobs if j.owner == owner]
        rows = ledger.rows(owner, "payer", *days(1, 3))
        assert sum(r.calls for r in rows) == len(mine)
        assert sum(r.compute_us for r in rows) == sum(round(j.metrics["run_ms"] * 1000)
                                                      for j in mine)
        assert sum(r.memory_mib_ms for r in rows) == sum(
            round(j.metrics["peak_memory_bytes"] * j.metrics["run_ms"] / MiB) for j in mine)
        assert sum(r.royalty_micros for r in rows) == sum(j.royalty_micros for j in mine)
        for day in (1, 2, 3):
            on_day = [j for j in mine if j.finished_at.startswith(f"2026-03-0{day}")]
            assert ledger.compute_us_on(owner, f"2026-03-0{day}") == sum(
                round(j.metrics["run_ms"] * 1000) for j in on_day)
    paid = ledger.rows("carol", "payee", *days(1, 3))
    assert sum(r.calls for r in paid) == 3000
    assert sum(r.royalty_micros for r in paid) == sum(j.royalty_micros for j in jobs)


def test_an_entry_names_payer_payee_and_the_exact_version(ledger):
    UsageHook(ledger).job_finished(finished("j_9", owner="bob", algorithm="carol/algo@1.2.3",
                                            royalty=500, run_ms=1500.0, memory=512 * MiB))
    entry = ledger.entry("j_9")
    assert entry["payer"] == "bob" and entry["payee"] == "carol"
    assert entry["algorithm"] == "carol/algo" and entry["version"] == "1.2.3"
    assert entry["compute_us"] == 1_500_000 and entry["memory_mib_ms"] == 768_000
    assert entry["royalty_micros"] == 500 and entry["day"] == "2026-03-01"


def test_a_finished_job_still_holding_its_slot_is_metered_by_the_repair_pass(
        redis_client, metrics, ledger):
    """Its worker was lost between the terminal write and the hooks: the lease reaper's
    fair-share repair meters it, once however often it looks."""
    jobs = JobStore(redis_client, retention_s=3600)
    job = finished("j_lost", run_ms=250.0)
    jobs.create(job)
    jobs.create(JobRecord(id="j_running", owner="alice", status=JobStatus.RUNNING))
    status_of = metered_status(jobs, [MetricsHook(metrics), UsageHook(ledger)])
    for _ in range(2):
        assert status_of("j_lost") == "succeeded"
        assert status_of("j_running") == "running" and status_of("j_gone") is None
    assert metrics.summary("b_1").calls == 1
    assert ledger.entry("j_lost")["compute_us"] == 250_000
    assert ledger.entry("j_running") is None


def test_a_job_never_measured_counts_as_a_call_without_latency_samples(metrics):
    MetricsHook(metrics).job_finished(finished("j_1", run_ms=40.0))
    lost = JobRecord(id="j_lost", owner="alice", status=JobStatus.FAILED, build_id="b_1",
                     algorithm="alice/algo@0.1.0", finished_at=DAY.format(1, 9))
    MetricsHook(metrics).job_finished(lost)
    summary = metrics.summary("b_1")
    assert summary.calls == 2 and summary.rate(JobStatus.FAILED) == 0.5
    assert summary.run_ms.count == 1 and summary.run_ms.p50 == pytest.approx(40.0, rel=0.05)


# One round trip for a finished job's writes --------------------------------------------

def test_a_chain_runs_each_script_with_its_own_keys_and_arguments(redis_client):
    from algohost.store import CHAIN_ERROR, ScriptCall, ScriptChain

    put = "redis.call('SET', KEYS[1], ARGV[1]) return #ARGV"
    fail = "return redis.call('INCR', KEYS[1])"  # on a key that holds text: an error
    chain = ScriptChain(redis_client, put, fail, put)
    results = chain([ScriptCall(["k1"], ["a", "b"]), ScriptCall(["k1"], []),
                     ScriptCall(["k2"], ["c"])])
    assert results[0] == 2 and results[2] == 1
    assert isinstance(results[1], str) and results[1].startswith(CHAIN_ERROR)
    assert redis_client.mget("k1", "k2") == ["a", "c"]  # the failed step stopped nothing
    with pytest.raises(ValueError):
        chain([ScriptCall(["k1"], ["a"])])


def test_the_finish_hook_meters_the_job_then_gives_its_slot_to_the_next(
        redis_client, metrics, ledger):
    from algohost.config import Settings
    from algohost.store.fairshare import FairShare
    from algohost.store.limits import LimitStore
    from algohost.worker.metering import FinishHook

    jobs = JobStore(redis_client, retention_s=600)
    sent = []
    fair = FairShare(redis_client, LimitStore(redis_client, Settings(owner_max_running=1)),
                     sent.append, JobStore.key(""))
    for n in range(2):
        jobs.create(JobRecord(id=f"j_{n}", owner="alice", status=JobStatus.QUEUED,
                              created_at="2026-03-01T09:00:00.000Z"))
        fair.admit("alice", f"j_{n}", jobs.owner_index_key("alice"))
    assert fair.usage("alice") == (1, 1)
    hook = FinishHook(redis_client, metrics, ledger, fair)
    hook.job_finished(finished("j_0"))
    assert metrics.summary("b_1").calls == 1
    assert ledger.entry("j_0")["compute_us"] > 0
    assert sent == ["j_1"] and fair.usage("alice") == (1, 0)  # j_1 admitted and sent
    hook.job_finished(finished("j_0"))  # finished again: counted once, nothing more sent
    assert metrics.summary("b_1").calls == 1 and sent == ["j_1"]
    hook.job_finished(finished("j_x", build_id=""))  # no build: no metrics, still a slot
    assert ledger.entry("j_x") is not None
