"""The pipeline run record on a real Redis: compare-and-set writes of what changed only."""

import time

import pytest

from algohost.store.pipelines import (
    PipelineRunRecord,
    PipelineStore,
    RunStatus,
    StepState,
    StepStatus,
)

pytestmark = pytest.mark.integration


def new_run() -> PipelineRunRecord:
    return PipelineRunRecord(id="pr_test", owner="alice", status=RunStatus.RUNNING,
                             pipeline="alice/p", version=1, spec={"steps": {}},
                             input={"big": "x" * 1000}, steps={"a": StepState(), "b": StepState()})


def test_a_write_wins_only_at_the_revision_it_read_and_moves_it_on(redis_client):
    store = PipelineStore(redis_client, 3600)
    store.create_run(new_run(), due=time.time() + 60)
    read = store.get_run("pr_test")
    assert read is not None and read.rev == 0
    moved = PipelineRunRecord.from_redis(read.to_redis())
    moved.steps["a"].status = StepStatus.QUEUED
    assert store.write_run(moved, time.time() + 60, read)
    stale = PipelineRunRecord.from_redis(read.to_redis())
    stale.steps["b"].status = StepStatus.QUEUED
    assert not store.write_run(stale, time.time() + 60, read)  # another writer moved it
    stored = store.get_run("pr_test")
    assert stored.rev == 1
    assert stored.steps["a"].status is StepStatus.QUEUED
    assert stored.steps["b"].status is StepStatus.PENDING


def test_a_write_leaves_the_fields_it_did_not_change(redis_client):
    store = PipelineStore(redis_client, 3600)
    store.create_run(new_run(), due=time.time() + 60)
    read = store.get_run("pr_test")
    redis_client.hset(PipelineStore.run_key("pr_test"), "input", '"as stored"')
    finished = PipelineRunRecord.from_redis(read.to_redis())
    finished.status = RunStatus.SUCCEEDED
    assert store.write_run(finished, None, read)
    stored = store.get_run("pr_test")
    assert stored.input == "as stored"  # not written again
    assert stored.status is RunStatus.SUCCEEDED
    assert store.due_runs(time.time() + 3600) == []  # a finished run is due for nothing
