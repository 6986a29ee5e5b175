"""Chunks of a batch against a real Redis and the stub sandbox behind a real warm pool.

One failing input never fails the others, a dead container is replaced, a cancel stops
the chunk, running a chunk twice never counts twice, and a chunk whose worker was lost
runs again (or, past the limit, fails) through its lease.
"""

import json
import threading
import time
from dataclasses import replace

import pytest

from algohost.config import SandboxSettings
from algohost.dispatch import RecordingDispatcher
from algohost.errors import ContainerStartFailed, SandboxUnavailable
from algohost.manifest import Manifest, ResourcesSection
from algohost.sandbox.base import ExitReason
from algohost.sandbox.pool import WarmPool
from algohost.sandbox.stub import SimulatedExit, StubSandbox
from algohost.store.batches import (
    RUNNING_CHUNKS_KEY,
    BatchRecord,
    BatchStatus,
    BatchStore,
    chunk_member,
)
from algohost.store.registry import BuildRecord, BuildStatus
from algohost.store.webhooks import WebhookStore
from algohost.webhooks.notifier import WebhookNotifier, batch_subject
from algohost.worker import batching, execution
from algohost.worker.batching import ChunkRunner, reap_expired_chunks
from algohost.worker.execution import NoSecrets, spec_for
from tests.waiting import ManualClock, eventually

pytestmark = pytest.mark.integration
BUILD = BuildRecord(
    id="bld_1", image="stub", owner="alice", name="picky", version="0.1.0",
    status=BuildStatus.SUCCEEDED,
    manifest=Manifest(name="picky", entrypoint="main:apply",
                      resources=ResourcesSection(timeout_s=5, memory_mb=64)))


def picky(x):
    if x == "crash":
        raise SimulatedExit(ExitReason.CRASHED)
    if isinstance(x, int) and x % 10 == 7:
        raise ValueError(f"{x} is unlucky")
    return x * 2


class Builds:
    status = BuildStatus.SUCCEEDED

    def get_build(self, build_id):
        return replace(BUILD, ref="alice/picky@0.1.0", status=self.status)

    build_for_call = get_build


class OneSecret:
    """The build's secret source: one value, which no stored result may show."""

    VALUE = "s3cr3t-value-of-alice"

    def for_build(self, build):
        return {"TOKEN": self.VALUE}, "v1"


class Harness:
    def __init__(self, redis_client, lease_s=30.0, clock=time.time, **pool_settings):
        self.redis = redis_client
        self.batches = BatchStore(redis_client, 3600)
        self.sandbox = StubSandbox({"bld_1": picky})
        self.pool = WarmPool(self.sandbox, SandboxSettings(**pool_settings))
        self.dispatcher = RecordingDispatcher()
        self.webhooks = WebhookStore(redis_client, 3600)
        notifier = WebhookNotifier(self.webhooks, self.dispatcher.enqueue_webhook)
        self.builds = Builds()
        self.runner = ChunkRunner(self.batches, self.builds, self.pool, NoSecrets(), notifier,
                                  lease_s=lease_s, clock=clock)

    def create(self, inputs, batch_id="b_1", **extra):
        record = BatchRecord(id=batch_id, owner="alice", status=BatchStatus.RUNNING,
                             requested="alice/picky", algorithm="alice/picky@0.1.0",
                             build_id="bld_1", total=len(inputs),
                             created_at="2026-01-01T00:00:00.000Z", timeout_s=5, **extra)
        self.batches.create(record, [json.dumps(i) for i in inputs])
        return batch_id

    def lose_worker(self, batch_id, start, stop, times=1):
        """What a worker that claimed the chunk and died leaves: a lease nobody renews."""
        for _ in range(times):
            assert self.batches.claim_chunk(batch_id, start, stop, until=time.time() - 1,
                                            now=time.time())

    def leases(self):
        return self.redis.zrange(RUNNING_CHUNKS_KEY, 0, -1)

    def lease_of(self, batch_id, start, stop):
        return self.redis.zscore(RUNNING_CHUNKS_KEY, chunk_member(batch_id, start, stop))


@pytest.fixture
def h(redis_client):
    return Harness(redis_client)


def test_failing_inputs_fail_alone_and_results_keep_input_order(h):
    batch_id = h.create(list(range(30)))
    for start, stop in ((0, 15), (15, 30)):
        h.runner.run(batch_id, start, stop)
    results = h.batches.results(batch_id, 0, 30)
    assert [r["status"] for r in results] == [
        "failed" if i % 10 == 7 else "succeeded" for i in range(30)]
    assert results[4]["output"] == 8
    assert results[7]["error"]["type"] == "ValueError"
    assert h.batches.counts(batch_id) == {"succeeded": 27, "failed": 3, "timed_out": 0,
                                          "canceled": 0}
    assert h.batches.status(batch_id) is BatchStatus.COMPLETED
    assert len(h.sandbox.sessions) == 1  # one warm container served the whole chunk


def test_a_deleted_version_runs_no_more_inputs_as_jobs_refuse_it(h):
    batch_id = h.create([1, 2, 3])
    h.builds.status = BuildStatus.DELETED
    h.runner.run(batch_id, 0, 3)
    results = h.batches.results(batch_id, 0, 3)
    assert [r["reason"] for r in results] == ["build_not_ready"] * 3
    assert h.sandbox.sessions == []


def test_a_chunk_whose_container_cannot_start_stores_its_error_masked(h):
    h.runner.secrets = OneSecret()

    def failing_start(spec):
        raise ContainerStartFailed(f"ValueError: bad token {OneSecret.VALUE}")

    h.sandbox.start = failing_start
    batch_id = h.create([1, 2])
    h.runner.run(batch_id, 0, 2)
    results = h.batches.results(batch_id, 0, 2)
    assert [r["reason"] for r in results] == ["container_start_failed"] * 2
    assert OneSecret.VALUE not in json.dumps(results)
    assert "bad token ***" in results[0]["error"]["message"]


def test_a_dead_container_is_replaced_for_the_rest_of_the_chunk(h):
    batch_id = h.create([1, "crash", 2, 3])
    h.runner.run(batch_id, 0, 4)
    statuses = [r["status"] for r in h.batches.results(batch_id, 0, 4)]
    assert statuses == ["succeeded", "failed", "succeeded", "succeeded"]
    assert len(h.sandbox.sessions) == 2


def test_a_canceled_batch_runs_nothing_and_cancels_every_input(h):
    batch_id = h.create([1, 2, 3])
    assert h.batches.cancel(batch_id, "2026-01-01T00:00:01.000Z")
    h.runner.run(batch_id, 0, 3)
    assert [r["status"] for r in h.batches.results(batch_id, 0, 3)] == ["canceled"] * 3
    assert h.sandbox.sessions == []
    assert h.batches.status(batch_id) is BatchStatus.CANCELED


def test_running_a_chunk_twice_never_counts_twice(h):
    batch_id = h.create([1, 2, 3, 4])
    h.runner.run(batch_id, 0, 4)
    h.runner.run(batch_id, 0, 4)
    assert h.batches.counts(batch_id)["succeeded"] == 4
    assert len(h.sandbox.sessions[0].inputs) == 4


def test_the_completed_webhook_is_queued_once_by_the_last_chunk(h):
    batch_id = h.create(list(range(6)), webhook="https://hooks.example/b",
                        webhook_events=["started", "completed"])
    h.runner.run(batch_id, 0, 3)
    h.runner.run(batch_id, 3, 6)
    deliveries = h.webhooks.for_subject(batch_subject(batch_id))
    assert [d.event for d, _ in deliveries] == ["started", "completed"]
    body = json.loads(deliveries[1][0].body)
    assert body["status"] == "completed" and body["counts"]["succeeded"] == 6
    assert body["progress"] == 1.0
    assert len(h.dispatcher.webhooks) == 2


RECORDED = {"status": "succeeded", "reason": "succeeded", "output": "from the lost worker"}


def test_a_lost_workers_chunk_runs_again_and_only_what_it_left(h):
    batch_id = h.create([1, 2, 3, 4])
    h.batches.record_results(batch_id, {0: RECORDED}, "2026-01-01T00:00:01.000Z")
    h.lose_worker(batch_id, 0, 4)
    assert reap_expired_chunks(h.runner, h.dispatcher.enqueue_batch, max_attempts=3) == [
        (batch_id, 0, 4)]
    assert h.dispatcher.batches == [(batch_id, [(0, 4)])]
    h.runner.run(batch_id, 0, 4)  # the message the reaper sent
    results = h.batches.results(batch_id, 0, 4)
    assert results[0] == RECORDED
    assert [r["output"] for r in results[1:]] == [4, 6, 8]
    assert h.sandbox.sessions[0].inputs == [2, 3, 4]
    assert h.batches.status(batch_id) is BatchStatus.COMPLETED
    assert h.leases() == []  # released once its results were written


def test_past_the_attempt_limit_a_lost_chunks_rest_fails_and_the_batch_completes(h):
    batch_id = h.create([1, 2, 3], webhook="https://hooks.example/b",
                        webhook_events=["completed"])
    h.batches.record_results(batch_id, {0: RECORDED}, "2026-01-01T00:00:01.000Z")
    h.lose_worker(batch_id, 0, 3, times=3)
    assert reap_expired_chunks(h.runner, h.dispatcher.enqueue_batch, max_attempts=3) == [
        (batch_id, 0, 3)]
    assert h.dispatcher.batches == []
    results = h.batches.results(batch_id, 0, 3)
    assert results[0] == RECORDED
    assert {(r["status"], r["reason"]) for r in results[1:]} == {("failed", "worker_lost")}
    assert results[1]["error"]["message"] == "the worker was lost 3 times"
    assert h.batches.status(batch_id) is BatchStatus.COMPLETED
    [(delivery, _)] = h.webhooks.for_subject(batch_subject(batch_id))
    assert json.loads(delivery.body)["counts"]["failed"] == 2
    assert h.sandbox.sessions == [] and h.leases() == []


def test_a_chunk_under_a_live_lease_is_neither_run_twice_nor_reaped(h):
    batch_id = h.create([1, 2])
    assert h.batches.claim_chunk(batch_id, 0, 2, until=time.time() + 30, now=time.time()) == 1
    h.runner.run(batch_id, 0, 2)  # a redelivered copy of the message
    assert h.sandbox.sessions == []
    assert h.batches.results(batch_id, 0, 2) == [None, None]
    assert reap_expired_chunks(h.runner, h.dispatcher.enqueue_batch, max_attempts=3) == []
    assert h.leases() == [chunk_member(batch_id, 0, 2)]


def test_a_chunk_that_lost_its_lease_stops_and_leaves_the_rest_to_the_new_holder(
        redis_client):
    clock = ManualClock()
    h = Harness(redis_client, lease_s=0.3, clock=clock)
    batch_id = h.create([1, "steal", 3, 4])
    member = chunk_member(batch_id, 0, 4)

    def taken_over_midway(x):
        if x == "steal":  # the reaper gave the chunk to another run while this one hung
            h.redis.zadd(RUNNING_CHUNKS_KEY, {member: time.time() + 60})
            clock.advance(batching.CANCEL_CHECK_S)  # the hang lasts until the next check
            return "done"
        return picky(x)

    h.sandbox.algorithms["bld_1"] = taken_over_midway
    h.runner.run(batch_id, 0, 4)
    results = h.batches.results(batch_id, 0, 4)
    assert [r and r["status"] for r in results] == ["succeeded", "succeeded", None, None]
    assert h.sandbox.sessions[0].inputs == [1, "steal"]
    assert h.leases() == [member]  # the new holder's lease is left alone


def test_a_chunk_waiting_for_a_container_keeps_its_lease(redis_client, monkeypatch):
    monkeypatch.setattr(batching, "ACQUIRE_SLICE_S", 0.01)  # look at the lease often
    clock = ManualClock()
    h = Harness(redis_client, lease_s=1.0, clock=clock, pool_max_per_build=1)
    batch_id = h.create([1, 2])
    busy, _ = h.pool.acquire(spec_for(BUILD, {}, ""))  # the build's one slot
    chunk = threading.Thread(target=h.runner.run, args=(batch_id, 0, 2), daemon=True)
    chunk.start()
    eventually(lambda: h.pool.waiting() == 1, what="the chunk to wait for a container")
    for _ in range(4):  # twice the lease, every slot still busy: only renewals keep it
        clock.advance(0.5)
        eventually(lambda: h.lease_of(batch_id, 0, 2) == pytest.approx(clock() + 1, abs=1e-3),
                   what="the chunk's lease to be renewed")
    assert h.batches.take_expired_chunks(clock()) == []
    h.pool.release(busy, True)
    chunk.join(10)
    assert [r["output"] for r in h.batches.results(batch_id, 0, 2)] == [2, 4]


def lost_once_per_input(lost: set):
    """An engine that restarts under each listed input's first run, then stays up."""
    def algorithm(x):
        if x in lost:
            lost.discard(x)
            raise SimulatedExit(ExitReason.SANDBOX_LOST, "the container engine restarted")
        if x == "lost-always":
            raise SimulatedExit(ExitReason.SANDBOX_LOST, "the container engine restarted")
        if x == "oom":
            raise SimulatedExit(ExitReason.OOM)
        return picky(x)
    return algorithm


def test_an_input_lost_to_the_sandbox_runs_again_in_a_fresh_container(h):
    pauses = []
    h.runner.sleep = pauses.append
    h.sandbox.algorithms["bld_1"] = lost_once_per_input({2})
    batch_id = h.create([1, 2, 3, "crash", "oom"])
    h.runner.run(batch_id, 0, 5)
    results = h.batches.results(batch_id, 0, 5)
    assert [r["output"] for r in results[:3]] == [2, 4, 6]
    # Its own crash or the OOM killer is the input's doing: recorded, never run again.
    assert [r["reason"] for r in results[3:]] == ["crashed", "oom"]
    assert pauses == [execution.LOST_PAUSE_S]  # the engine is given time to come back
    assert h.sandbox.sessions[1].inputs[0] == 2  # the lost container is not reused
    assert h.batches.counts(batch_id) == {"succeeded": 3, "failed": 2, "timed_out": 0,
                                          "canceled": 0}


def test_past_its_attempts_a_lost_input_fails_as_sandbox_lost_and_the_others_succeed(h):
    pauses = []
    h.runner.max_attempts, h.runner.sleep = 2, pauses.append
    h.sandbox.algorithms["bld_1"] = lost_once_per_input(set())
    batch_id = h.create([1, "lost-always", 3])
    h.runner.run(batch_id, 0, 3)
    first, lost, last = h.batches.results(batch_id, 0, 3)
    assert first["output"] == 2 and last["output"] == 6
    assert lost["status"] == "failed" and lost["reason"] == "sandbox_lost"
    assert lost["error"]["type"] == "SandboxLost" and "engine" in lost["error"]["message"]
    assert len(pauses) == 1 and h.batches.status(batch_id) is BatchStatus.COMPLETED


def test_a_chunk_that_could_not_start_while_the_engine_was_away_is_retried(h):
    pauses, real_acquire, away = [], h.pool.acquire, [1]

    def acquire_once_away(spec, wait_s=None, nested=False):
        if away:
            away.pop()
            raise SandboxUnavailable("start container: the Docker engine is not reachable")
        return real_acquire(spec, wait_s=wait_s)

    h.runner.sleep = pauses.append
    h.runner.pool = replace_acquire(h.pool, acquire_once_away)
    batch_id = h.create([1, 2])
    h.runner.run(batch_id, 0, 2)
    assert [r["output"] for r in h.batches.results(batch_id, 0, 2)] == [2, 4]
    assert pauses == [execution.LOST_PAUSE_S]


def replace_acquire(pool, acquire):
    class Away:
        def __getattr__(self, name):
            return getattr(pool, name)
    away = Away()
    away.acquire = acquire
    return away
