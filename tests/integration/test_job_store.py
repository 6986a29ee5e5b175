"""The job record's lifecycle against a real Redis: CAS transitions, waiting, leases."""

import threading
import time

import pytest

from algohost.store.jobs import InvalidTransition, JobRecord, JobStatus, JobStore
from algohost.worker.execution import reap_expired_leases
from tests.waiting import eventually


def new_job(store, job_id="j_1", **fields):
    job = JobRecord(id=job_id, owner="alice", status=JobStatus.QUEUED,
                    created_at="2026-01-01T00:00:00.000Z", **fields)
    store.create(job)
    return job


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, retention_s=60)


def test_claim_succeeds_once_then_redelivery_does_nothing(store):
    new_job(store)
    assert store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED},
                            lease_until=time.time() + 30)
    assert not store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED})
    assert store.get("j_1").status == "running"


def test_claim_takes_a_queued_job_once_and_returns_its_record(store):
    new_job(store, attempts=1)
    claimed, job = store.claim("j_1", "w1", "2026-01-01T00:00:01.000Z", time.time() + 30)
    assert claimed and job.status == "running" and job.worker == "w1"
    assert job.attempts == 2 and job.started_at == "2026-01-01T00:00:01.000Z"
    assert store.expired_leases(time.time() + 60) == ["j_1"]
    again, same = store.claim("j_1", "w2", "2026-01-01T00:00:02.000Z", time.time() + 30)
    assert not again and same.worker == "w1"
    assert store.claim("j_missing", "w1", "x", 0) == (False, None)


def test_finished_job_is_not_changed_by_a_late_cancel(store):
    new_job(store)
    store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED})
    assert store.transition("j_1", JobStatus.SUCCEEDED, {JobStatus.RUNNING}, output={"x": 1})
    assert not store.transition("j_1", JobStatus.CANCELED)
    assert store.get("j_1").output == {"x": 1}


def test_transition_outside_the_table_is_a_bug(store):
    new_job(store)
    with pytest.raises(InvalidTransition):
        store.transition("j_1", JobStatus.SUCCEEDED, {JobStatus.QUEUED})


def test_fields_keep_their_json_types(store):
    new_job(store, output=None)
    store.update("j_1", logs="a\nb", metrics={"run_ms": 1.5}, warm=False)
    job = store.get("j_1")
    assert job.logs == "a\nb" and job.metrics == {"run_ms": 1.5} and job.warm is False


def blocked_clients(redis_client):
    """Connections of this database parked in a blocking command (BLPOP)."""
    return [c for c in redis_client.client_list() if "b" in c["flags"]]


def test_wait_terminal_wakes_when_the_job_finishes(store, redis_client):
    new_job(store)
    store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED})
    woke = []
    waiter = threading.Thread(target=lambda: woke.append(store.wait_terminal("j_1", 120)),
                              daemon=True)
    waiter.start()
    eventually(lambda: blocked_clients(redis_client), what="the waiter to block")
    store.transition("j_1", JobStatus.SUCCEEDED, {JobStatus.RUNNING})
    # Well before its own timeout: woken by the finish, not by the clock.
    [job] = eventually(lambda: woke, timeout_s=20, what="the waiter to wake")
    assert job.status == "succeeded"


def test_wait_terminal_returns_the_running_job_after_the_timeout(store):
    new_job(store)
    assert store.wait_terminal("j_1", 0.2).status == "queued"


def test_reaper_requeues_a_lost_job_then_fails_it_past_the_limit(store):
    new_job(store)
    enqueued = []
    store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED}, lease_until=time.time() - 1,
                     attempts=1)
    assert reap_expired_leases(store, enqueued.append, max_attempts=2) == ["j_1"]
    assert store.get("j_1").status == "queued" and enqueued == ["j_1"]
    store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED}, lease_until=time.time() - 1,
                     attempts=2)
    reap_expired_leases(store, enqueued.append, max_attempts=2)
    job = store.get("j_1")
    assert job.status == "failed" and job.reason == "worker_lost"
    assert enqueued == ["j_1"]


def test_a_renewed_lease_is_not_reaped(store):
    new_job(store)
    store.transition("j_1", JobStatus.RUNNING, {JobStatus.QUEUED}, lease_until=time.time() - 1)
    store.renew_lease("j_1", time.time() + 30)
    assert reap_expired_leases(store, lambda _: None, max_attempts=3) == []


def test_a_wait_longer_than_the_client_default_read_timeout_works(redis_client):
    from algohost.config import load_settings
    from algohost.store import connect
    from tests.conftest import TEST_REDIS_URL

    store = JobStore(connect(load_settings({"ALGOHOST_REDIS_URL": TEST_REDIS_URL})), 60)
    new_job(store)
    started = time.monotonic()
    assert store.wait_terminal("j_1", 6.5).status == "queued"
    assert time.monotonic() - started >= 6
