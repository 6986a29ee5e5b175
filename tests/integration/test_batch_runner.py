"""Chunks of a batch against a real Redis and the stub sandbox behind a real warm pool.

One failing input never fails the others, a dead container is replaced, a cancel stops
the chunk, and running a chunk twice never counts twice.
"""

import json

import pytest

from algohost.config import SandboxSettings
from algohost.sandbox.base import ExitReason
from algohost.sandbox.pool import WarmPool
from algohost.sandbox.stub import SimulatedExit, StubSandbox
from algohost.store.batches import BatchStatus, BatchStore
from algohost.store.webhooks import WebhookStore
from algohost.webhooks.notifier import WebhookNotifier, batch_subject
from algohost.worker.batching import ChunkRunner
from algohost.worker.dispatch import RecordingDispatcher
from algohost.worker.execution import NoSecrets

pytestmark = pytest.mark.integration
BUILD = {"id": "bld_1", "image": "stub", "owner": "alice", "name": "picky",
         "manifest": {"resources": {"timeout_s": 5, "memory_mb": 64, "cpus": 1.0,
                                    "network": False}}}


def picky(x):
    if x == "crash":
        raise SimulatedExit(ExitReason.CRASHED)
    if isinstance(x, int) and x % 10 == 7:
        raise ValueError(f"{x} is unlucky")
    return x * 2


class Builds:
    def get_build(self, build_id):
        return BUILD


class Harness:
    def __init__(self, redis_client):
        self.batches = BatchStore(redis_client, 3600)
        self.sandbox = StubSandbox({"bld_1": picky})
        self.pool = WarmPool(self.sandbox, SandboxSettings())
        self.dispatcher = RecordingDispatcher()
        self.webhooks = WebhookStore(redis_client, 3600)
        notifier = WebhookNotifier(self.webhooks, self.dispatcher.enqueue_webhook)
        self.runner = ChunkRunner(self.batches, Builds(), self.pool, NoSecrets(), notifier)

    def create(self, inputs, batch_id="b_1", **extra):
        record = {"id": batch_id, "owner": "alice", "requested": "alice/picky",
                  "algorithm": "alice/picky@0.1.0", "build_id": "bld_1", "status": "running",
                  "reason": None, "total": len(inputs), "created_at": "2026-01-01T00:00:00.000Z",
                  "finished_at": None, "timeout_s": 5, "webhook": None, "webhook_events": [],
                  **extra}
        self.batches.create(record, [json.dumps(i) for i in inputs])
        return batch_id


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
    assert [d["event"] for d in deliveries] == ["started", "completed"]
    body = json.loads(deliveries[1]["body"])
    assert body["status"] == "completed" and body["counts"]["succeeded"] == 6
    assert body["progress"] == 1.0
    assert len(h.dispatcher.webhooks) == 2
