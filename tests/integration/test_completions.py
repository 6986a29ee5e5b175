"""Waiting for a job through the process's one shared subscription, against a real Redis:
many waiters cost no connection each, a finish before the wait is not missed, and the
listener comes back after its connection is cut."""

import threading

import pytest
import redis

from algohost.api import create_app
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.store.completions import CompletionWaiter, shared_waiter
from algohost.store.jobs import POLL_S, RECHECK_S, JobStatus, JobStore, recheck_pause
from tests.conftest import TEST_REDIS_URL
from tests.integration.test_job_store import new_job
from tests.waiting import eventually

pytestmark = pytest.mark.integration
WAITERS = 60
POOL = 4


@pytest.fixture
def completions():
    waiter = CompletionWaiter(TEST_REDIS_URL)
    yield waiter
    waiter.close()


def listeners(redis_client, completions):
    return [c for c in redis_client.client_list() if c["name"] == completions.client_name]


@pytest.fixture
def store(redis_client, completions):
    return JobStore(redis_client, retention_s=60, completions=completions)


def finish(store, job_id):
    store.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED})
    store.transition(job_id, JobStatus.SUCCEEDED, {JobStatus.RUNNING})


def wait_in_threads(store, job_ids, timeout_s=120):
    woke = {}

    def wait(job_id):
        woke[job_id] = store.wait_terminal(job_id, timeout_s)

    threads = [threading.Thread(target=wait, args=(job_id,), daemon=True) for job_id in job_ids]
    for thread in threads:
        thread.start()
    return woke, threads


def test_many_waiters_share_one_subscription_and_hold_no_connection(redis_client,
                                                                    completions):
    # Sixty waiters on a pool of four connections: none may hold one while it waits.
    pool = redis.BlockingConnectionPool.from_url(TEST_REDIS_URL, max_connections=POOL,
                                                 timeout=5, decode_responses=True)
    store = JobStore(redis.Redis(connection_pool=pool), retention_s=60, completions=completions)
    job_ids = [new_job(store, f"j_{n}").id for n in range(WAITERS)]
    woke, threads = wait_in_threads(store, job_ids)
    eventually(lambda: completions.waiters == WAITERS and completions.ready,
               what="every caller to wait")
    # No BLPOP on this database (workers of a running stack may block on their broker's).
    test_db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    assert not [c for c in redis_client.client_list()
                if "b" in c["flags"] and c["db"] == test_db]
    assert len(listeners(redis_client, completions)) == 1
    for job_id in job_ids:
        finish(store, job_id)
    # Well before their own timeout: woken by the finish, not by the clock.
    eventually(lambda: len(woke) == WAITERS, timeout_s=30, what="every waiter to wake")
    assert all(job.status == "succeeded" for job in woke.values())
    assert completions.waiters == 0
    for thread in threads:
        thread.join(5)


def test_a_job_finished_before_the_wait_is_returned_at_once(store):
    new_job(store)
    finish(store, "j_1")
    assert store.wait_terminal("j_1", 120).status == "succeeded"


def test_a_finish_is_heard_after_the_listeners_connection_was_cut(store, redis_client,
                                                                  completions):
    new_job(store)
    completions.wait_ready(10)
    [listener] = listeners(redis_client, completions)
    redis_client.client_kill_filter(_id=listener["id"])
    woke, _ = wait_in_threads(store, ["j_1"])
    eventually(lambda: completions.ready and completions.waiters == 1,
               what="the listener to subscribe again")
    finish(store, "j_1")
    eventually(lambda: woke, timeout_s=30, what="the waiter to wake")
    assert woke["j_1"].status == "succeeded"


def test_the_wait_ends_at_its_timeout_with_the_job_as_it_is(store):
    new_job(store)
    assert store.wait_terminal("j_1", 0.3).status == "queued"


def test_every_app_of_a_process_shares_one_waiter_per_redis(api_redis_url):
    first = create_app(Settings(redis_url=api_redis_url), dispatcher=RecordingDispatcher(),
                       docker_ping=lambda: True)
    second = create_app(Settings(redis_url=api_redis_url), dispatcher=RecordingDispatcher(),
                        docker_ping=lambda: True)
    waiters = {id(app.extensions["algohost"].jobs.completions) for app in (first, second)}
    assert waiters == {id(shared_waiter(api_redis_url))}


def test_waiters_that_arrived_together_spread_their_safety_net_reads():
    # A thousand callers that came in one burst must not re-read their records in one
    # burst every pause: each draws its own pause around the nominal one.
    for subscribed, nominal in ((True, RECHECK_S), (False, POLL_S)):
        pauses = [recheck_pause(subscribed) for _ in range(1000)]
        assert all(nominal * 0.5 <= pause < nominal * 1.5 for pause in pauses)
        assert min(pauses) < nominal * 0.6 and max(pauses) > nominal * 1.4
