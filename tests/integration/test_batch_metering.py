"""Batch inputs metered as jobs are, on a real Redis: each input that ran is one call in the
usage ledger (payer, payee, compute, memory, royalty) and in its build's metrics, once,
however often its chunk runs; its compute counts toward the caller's daily budget."""

from datetime import UTC, datetime

import pytest

from algohost.clock import now_iso
from algohost.config import Settings
from algohost.errors import BudgetExhausted
from algohost.store.batch_metering import BatchMetering, batch_entry
from algohost.store.limits import LimitStore
from algohost.store.metrics import BuildMetrics
from algohost.store.usage import ComputeBudget, MiB, UsageLedger
from algohost.worker.batching import ChunkRunner
from algohost.worker.execution import NoSecrets
from tests.integration.test_batch_runner import Harness

pytestmark = pytest.mark.integration
ROYALTY = 700


@pytest.fixture
def h(redis_client):
    harness = Harness(redis_client)
    harness.runner = ChunkRunner(harness.batches, harness.builds, harness.pool, NoSecrets(),
                                 lease_s=30.0, metering=BatchMetering.from_settings(Settings()))
    return harness


def create(h, inputs, batch_id="b_1"):
    batch_id = h.create(inputs, batch_id=batch_id, royalty_micros=ROYALTY)
    h.redis.hset(h.batches.key(batch_id), "owner", '"bob"')  # bob calls alice's algorithm
    return batch_id


def today():
    return datetime.now(UTC).date()


def expected(results):
    ran = [r["metrics"] for r in results if "metrics" in r]
    return {"calls": len(ran),
            "compute_us": sum(round(m["run_ms"] * 1000) for m in ran),
            "memory_mib_ms": sum(round(m["peak_memory_bytes"] * m["run_ms"] / MiB) for m in ran),
            "royalty_micros": ROYALTY * len(ran)}


def totals(ledger, owner, role):
    rows = ledger.rows(owner, role, today(), today())
    return {name: sum(getattr(r, name) for r in rows)
            for name in ("calls", "compute_us", "memory_mib_ms", "royalty_micros")}


def test_each_input_that_ran_is_one_call_for_payer_payee_and_build(h):
    batch_id = create(h, [*range(20), "crash"])
    for start, stop in ((0, 8), (8, 21)):
        h.runner.run(batch_id, start, stop)
    results = h.batches.results(batch_id, 0, 21)
    want = expected(results)
    assert want["calls"] == 21  # the crashed input ran too: the worker measured it
    ledger = UsageLedger.from_settings(h.redis, Settings())
    assert totals(ledger, "bob", "payer") == want
    assert totals(ledger, "alice", "payee") == want
    assert totals(ledger, "alice", "payer")["calls"] == 0
    assert ledger.compute_us_on("bob", today().isoformat()) == want["compute_us"]
    entry = batch_entry(h.redis, batch_id)
    assert {k: entry[k] for k in want} == want
    assert (entry["payer"], entry["payee"], entry["algorithm"], entry["version"]) == (
        "bob", "alice", "alice/picky", "0.1.0")
    summary = BuildMetrics.from_settings(h.redis, Settings()).summary("bld_1")
    assert summary.calls == 21
    assert summary.statuses == {"succeeded": 18, "failed": 3, "timed_out": 0, "canceled": 0}
    assert summary.run_ms.count == 21
    assert summary.run_ms.max == max(r["metrics"]["run_ms"] for r in results)


def test_a_chunk_run_again_or_flushed_twice_meters_nothing_twice(h):
    batch_id, at = create(h, list(range(10))), now_iso()
    meter = BatchMetering.from_settings(Settings()).meter(h.batches.get(batch_id),
                                                          at)
    ran = {i: {"status": "succeeded", "reason": "succeeded", "output": i * 2,
               "metrics": {"run_ms": 1.5 + i, "peak_memory_bytes": 4 * MiB}} for i in range(3)}
    # A first run flushed inputs 0..2, then its worker was lost; the chunk runs again.
    h.batches.record_results(batch_id, ran, at, meter)
    # A flush that overlaps what is stored: 2 is kept as it was, 3 and 4 are metered.
    overlap = {i: {"status": "timed_out", "reason": "timed_out",
                   "metrics": {"run_ms": 90.0 + i, "peak_memory_bytes": 0}} for i in (2, 3, 4)}
    h.batches.record_results(batch_id, overlap, at, meter)
    h.runner.run(batch_id, 0, 10)
    h.runner.run(batch_id, 0, 10)  # and once more, redelivered after it finished
    results = h.batches.results(batch_id, 0, 10)
    assert results[:3] == list(ran.values())
    assert [r["status"] for r in results[3:5]] == ["timed_out", "timed_out"]
    h.batches.record_results(batch_id, dict(enumerate(results)), at,
                             meter)  # a flush repeated: stores and meters nothing
    want = expected(results)
    assert want["calls"] == 10
    ledger = UsageLedger.from_settings(h.redis, Settings())
    assert {k: totals(ledger, "bob", "payer")[k] for k in want} == want
    entry = batch_entry(h.redis, batch_id)
    assert {k: entry[k] for k in want} == want
    summary = BuildMetrics.from_settings(h.redis, Settings()).summary("bld_1")
    assert summary.calls == summary.run_ms.count == 10
    assert summary.statuses["timed_out"] == 2 and summary.run_ms.max == 94.0
    assert summary.peak_memory_bytes.count == 8  # 3 and 4 measured no memory


def test_canceled_inputs_are_not_billed_and_a_spent_budget_refuses(h):
    batch_id = create(h, list(range(6)))
    h.batches.cancel(batch_id, "2026-01-01T00:00:01.000Z")
    h.runner.run(batch_id, 0, 6)
    ledger = UsageLedger.from_settings(h.redis, Settings())
    assert totals(ledger, "bob", "payer")["calls"] == 0
    assert batch_entry(h.redis, batch_id) is None
    other = create(h, [1, 2], batch_id="b_2")
    h.runner.run(other, 0, 2)
    limits = LimitStore(h.redis, Settings())
    spent = ledger.compute_us_on("bob", today().isoformat()) / 1e6
    assert spent > 0
    limits.set("bob", compute_s_per_day=spent)
    with pytest.raises(BudgetExhausted):
        ComputeBudget(ledger, limits).check("bob")


def test_thousands_of_inputs_sum_exactly_to_their_stored_results(h):
    """2,000 inputs in chunks of 200, a few chunks run twice: the day's totals, the batch's
    entry and the build's call count equal the stored results, to the microsecond."""
    batch_id = create(h, list(range(2000)))
    for start in range(0, 2000, 200):
        h.runner.run(batch_id, start, start + 200)
    for start in (0, 800, 1800):
        h.runner.run(batch_id, start, start + 200)  # redelivered: nothing new to meter
    results = h.batches.results(batch_id, 0, 2000)
    want = expected(results)
    assert want["calls"] == 2000
    ledger = UsageLedger.from_settings(h.redis, Settings())
    assert totals(ledger, "bob", "payer") == totals(ledger, "alice", "payee") == want
    entry = batch_entry(h.redis, batch_id)
    assert {k: entry[k] for k in want} == want
    summary = BuildMetrics.from_settings(h.redis, Settings()).summary("bld_1")
    assert (summary.calls, summary.statuses["failed"]) == (2000, 200)
