"""The worker's JobRunner against real Redis and a stub sandbox: one behaviour a test.

The Docker side is covered in test_docker_sandbox and test_end_to_end; here the
record's lifecycle, the lease and the masking are checked quickly.
"""

import threading
import time

import pytest

from algohost.config import SandboxSettings, Settings
from algohost.errors import EgressNotInstalled, SandboxUnavailable
from algohost.manifest import Manifest, ResourcesSection, SecretsSection
from algohost.sandbox.base import ExitReason
from algohost.sandbox.pool import WarmPool
from algohost.sandbox.stub import SimulatedExit, StubSandbox
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.registry import BuildRecord, BuildStatus
from algohost.worker import execution
from algohost.worker.execution import JobRunner, reap_expired_leases, spec_for
from tests.waiting import ManualClock, eventually

pytestmark = pytest.mark.integration
BUILD = BuildRecord(
    id="bld_1", image="stub", owner="alice", name="echo", version="0.1.0",
    status=BuildStatus.SUCCEEDED, ref="alice/echo@0.1.0",
    manifest=Manifest(name="echo", entrypoint="main:apply",
                      resources=ResourcesSection(timeout_s=5, memory_mb=64),
                      secrets=SecretsSection(names=["TOKEN"])))
TOKEN = "tok-3f9a1c7d5e"


def algorithm(x):
    if x == "leak":
        return {"said": f"my token is {TOKEN}"}
    if x == "raise":
        raise ValueError(f"bad input, token {TOKEN}")
    return x


class Builds:
    def get_build(self, build_id):
        return BUILD

    build_for_call = get_build


class OneSecret:
    def for_build(self, build):
        return {"TOKEN": TOKEN}, "v1"


class Harness:
    def __init__(self, redis_client, lease_s=60, per_build=4, clock=time.time):
        self.jobs = JobStore(redis_client, 600)
        self.pool = WarmPool(StubSandbox({"bld_1": algorithm}),
                             SandboxSettings(pool_max_per_build=per_build))
        self.runner = JobRunner(self.jobs, Builds(), self.pool, Settings(lease_s=lease_s),
                                "w1", secrets=OneSecret(), clock=clock)
        self.count = 0

    def submit(self, payload):
        self.count += 1
        job_id = f"j_{self.count}"
        self.jobs.create(JobRecord(id=job_id, owner="alice", status=JobStatus.QUEUED,
                                   build_id="bld_1", input=payload, timeout_s=5,
                                   created_at="2026-01-01T00:00:00.000Z"))
        return job_id

    def run(self, payload):
        job_id = self.submit(payload)
        self.runner.run(job_id)
        return self.jobs.get(job_id)

    def lease_of(self, job_id):
        return self.jobs.redis.zscore(JobStore.RUNNING_KEY, job_id)


@pytest.fixture
def h(redis_client):
    return Harness(redis_client)


def test_a_call_records_its_output_metrics_and_warmth(h):
    first, second = h.run({"a": 1}), h.run({"a": 2})
    assert first.status == "succeeded" and first.output == {"a": 1}
    assert (first.warm, second.warm) == (False, True)
    assert set(first.metrics) >= {"queue_ms", "cold_start_ms", "run_ms", "total_ms",
                                     "peak_memory_bytes"}
    assert first.attempts == 1 and first.worker == "w1"


def test_an_exception_is_a_failure_with_its_type_and_a_masked_message(h):
    job = h.run("raise")
    assert job.status == "failed" and job.reason == "exception"
    assert job.error["type"] == "ValueError"
    assert TOKEN not in str(job.error) and "***" in job.error["message"]


def test_a_secret_in_the_output_is_masked_before_it_is_stored(h):
    assert h.run("leak").output == {"said": "my token is ***"}


def test_a_call_refused_by_a_missing_egress_fence_fails_saying_so_and_frees_its_slot(h):
    def refused(spec):
        raise EgressNotInstalled("networked containers are refused until the egress fence "
                                 "is installed: run `algohost egress install` as root")

    h.pool.sandbox.start = refused
    job = h.run(1)
    assert job.status == "failed" and job.reason == "egress_not_installed"
    assert job.error["type"] == "EgressNotInstalled"
    assert "algohost egress install" in job.error["message"]
    assert h.pool.stats() == {}  # nothing held: the slot went back


def test_a_redelivered_message_for_a_finished_job_does_nothing(h):
    job = h.run(1)
    h.runner.run(job.id)
    assert h.jobs.get(job.id) == job


def test_a_job_waiting_for_a_container_keeps_its_lease_and_sees_a_cancel(redis_client,
                                                                        monkeypatch):
    monkeypatch.setattr(execution, "ACQUIRE_SLICE_S", 0.01)  # look at the lease often
    clock = ManualClock()
    h = Harness(redis_client, lease_s=3, per_build=1, clock=clock)
    held, _ = h.pool.acquire(spec_for(BUILD, {"TOKEN": TOKEN}, "v1"))  # the only slot
    waiting = h.submit(2)
    runner = threading.Thread(target=h.runner.run, args=(waiting,), daemon=True)
    runner.start()
    eventually(lambda: h.pool.waiting() == 1, what="the job to wait for a container")
    for _ in range(4):  # twice the lease, half a lease at a time: only renewals keep it
        clock.advance(1.5)
        eventually(lambda: h.lease_of(waiting) == pytest.approx(clock() + 3, abs=1e-3),
                   what="the lease to be renewed")
    assert reap_expired_leases(h.jobs, lambda job_id: None, max_attempts=3, now=clock()) == []
    assert h.jobs.transition(waiting, JobStatus.CANCELED)
    clock.advance(1)  # past the next look at the job's status
    runner.join(5)
    assert not runner.is_alive()
    assert h.jobs.get(waiting).status == "canceled"
    h.pool.release(held, True)


class EngineLost:
    """An algorithm whose engine goes away under its first `times` calls."""

    def __init__(self, times):
        self.left = times

    def __call__(self, x):
        if self.left > 0:
            self.left -= 1
            raise SimulatedExit(ExitReason.SANDBOX_LOST, "the container engine restarted")
        return x


def requeuing_harness(redis_client, algorithm, max_attempts=3):
    """A runner whose requeue delivers the message again at once, as a broker would."""
    h = Harness(redis_client)
    h.pool = WarmPool(StubSandbox({"bld_1": algorithm}), SandboxSettings())
    sent, pauses = [], []
    h.runner = JobRunner(h.jobs, Builds(), h.pool, Settings(max_attempts=max_attempts),
                         "w1", secrets=OneSecret(), requeue=sent.append, sleep=pauses.append)
    return h, sent, pauses


def redeliver(h, sent):
    while sent:
        h.runner.run(sent.pop(0))


def test_a_call_whose_engine_was_lost_runs_again_and_succeeds(redis_client):
    h, sent, pauses = requeuing_harness(redis_client, EngineLost(times=1))
    job_id = h.submit("again")
    h.runner.run(job_id)
    assert h.jobs.get(job_id).status == "queued" and sent == [job_id]
    redeliver(h, sent)
    job = h.jobs.get(job_id)
    assert job.status == "succeeded" and job.output == "again" and job.attempts == 2
    assert pauses == [execution.LOST_PAUSE_S]  # the engine is given time to come back


def test_past_its_attempts_a_lost_call_fails_with_reason_sandbox_lost(redis_client):
    h, sent, _ = requeuing_harness(redis_client, EngineLost(times=5), max_attempts=2)
    job_id = h.submit("never")
    h.runner.run(job_id)
    redeliver(h, sent)
    job = h.jobs.get(job_id)
    assert job.status == "failed" and job.reason == "sandbox_lost"
    assert job.error["type"] == "SandboxLost" and "engine" in job.error["message"]
    assert job.attempts == 2


class UnreachableEngine:
    def acquire(self, spec, wait_s=None):
        raise SandboxUnavailable("start container: the Docker engine is not reachable")

    def release(self, session, reusable):
        raise AssertionError("nothing was acquired")


def test_a_call_that_could_not_start_while_the_engine_was_away_is_retried(redis_client):
    h, sent, _ = requeuing_harness(redis_client, algorithm, max_attempts=2)
    h.runner.pool = UnreachableEngine()
    job_id = h.submit("later")
    h.runner.run(job_id)
    assert h.jobs.get(job_id).status == "queued" and sent == [job_id]
    redeliver(h, sent)
    job = h.jobs.get(job_id)
    assert job.status == "failed" and job.reason == "sandbox_unavailable"
    assert job.error["type"] == "SandboxUnavailable"
