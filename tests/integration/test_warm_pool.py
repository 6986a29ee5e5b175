"""Warm containers through the real worker: reuse, replacement, limits, cleanup.

This stack's worker keeps at most two containers per build and stops idle ones
after three seconds, so each behaviour shows within a test's time.
"""


import pytest

from tests.stack import POOL_REDIS_URL, TEST_ALGORITHMS, Stack, call, publish, publish_own
from tests.waiting import eventually

IDLE_S = 3
PER_BUILD = 2


@pytest.fixture(scope="module")
def pool_stack(tmp_path_factory, stack):  # `stack` first: it checks the services
    pool = Stack(tmp_path_factory.mktemp("pool"), owner="carol", node="pool",
                 ALGOHOST_REDIS_URL=POOL_REDIS_URL,
                 ALGOHOST_POOL_IDLE_S=str(IDLE_S),
                 ALGOHOST_POOL_MAX_PER_BUILD=str(PER_BUILD),
                 # These tests count the containers calls start; a prewarmed one would be
                 # one more (test_publishing.py covers prewarming).
                 ALGOHOST_PREWARM="0")
    pool.start_worker(concurrency=6)
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def moody(pool_stack):
    return publish(pool_stack, TEST_ALGORITHMS / "moody")


def publish_variant(stack, tmp_path, note):
    """moody with a comment added: a new version with a build of its own."""
    return publish_own(stack, TEST_ALGORITHMS / "moody", tmp_path, note)


def no_containers(stack, ref):
    eventually(lambda: not stack.containers_of(ref), IDLE_S * 4, "containers to stop")


def test_second_call_reuses_the_warm_container(pool_stack, moody):
    no_containers(pool_stack, moody)
    first = call(pool_stack, moody, {})
    second = call(pool_stack, moody, {})
    assert (first["warm"], second["warm"]) == (False, True)
    assert first["metrics"]["cold_start_ms"] > 0
    assert second["metrics"]["cold_start_ms"] == 0
    assert second["output"]["container"] == first["output"]["container"]
    assert second["output"]["loaded_at"] == first["output"]["loaded_at"]  # load() ran once
    assert len(pool_stack.containers_of(moody)) == 1


def test_a_crash_gets_the_next_call_a_fresh_container(pool_stack, moody):
    before = call(pool_stack, moody, {})
    crashed = call(pool_stack, moody, {"action": "crash"})
    assert crashed["status"] == "failed" and crashed["reason"] == "crashed"
    after = call(pool_stack, moody, {})
    assert after["status"] == "succeeded"
    assert after["output"]["container"] != before["output"]["container"]


def test_a_timeout_gets_the_next_call_a_fresh_container(pool_stack, moody):
    before = call(pool_stack, moody, {})
    timed_out = call(pool_stack, moody, {"action": "sleep", "seconds": 20}, timeout_s=1)
    assert timed_out["status"] == "timed_out"
    after = call(pool_stack, moody, {})
    assert after["warm"] is False
    assert after["output"]["container"] != before["output"]["container"]


def test_idle_containers_are_stopped_after_the_idle_time(pool_stack, moody):
    call(pool_stack, moody, {})
    assert pool_stack.containers_of(moody, running_only=True)  # kept warm at first
    no_containers(pool_stack, moody)


def test_concurrent_calls_never_exceed_the_per_build_limit(pool_stack, moody):
    jobs = [pool_stack.post_job(moody, {"action": "sleep", "seconds": 1.5}) for _ in range(5)]
    finished = [pool_stack.wait(job["id"]) for job in jobs]
    assert all(job["status"] == "succeeded" for job in finished)
    # A container serves one call at a time: never more containers than the limit.
    assert 1 <= len({job["output"]["container"] for job in finished}) <= PER_BUILD
    # Calls that waited for a free container counted that wait as queueing.
    assert max(job["metrics"]["queue_ms"] for job in finished) >= 1000


def test_graceful_shutdown_leaves_no_container_and_a_killed_worker_is_cleaned_up(
        pool_stack, moody):
    call(pool_stack, moody, {})
    assert pool_stack.containers_of(moody)
    pool_stack.stop_worker()  # SIGTERM: Celery's warm shutdown
    assert not pool_stack.containers_of(moody)

    pool_stack.start_worker(concurrency=6)
    call(pool_stack, moody, {})
    orphans = pool_stack.containers_of(moody)
    assert orphans
    pool_stack.kill_worker()
    assert pool_stack.containers_of(moody), "a killed worker cannot clean up"

    pool_stack.start_worker(concurrency=6)  # same node name: finds its predecessor's
    eventually(lambda: not pool_stack.containers_of(moody), 30, "orphans to be removed")
    assert call(pool_stack, moody, {})["status"] == "succeeded"


def test_deleting_a_version_stops_its_warm_containers_and_removes_its_image(
        pool_stack, tmp_path):
    ref = publish_variant(pool_stack, tmp_path, "a version of its own, to delete")
    assert call(pool_stack, ref, {})["status"] == "succeeded"
    assert pool_stack.containers_of(ref, running_only=True)
    image = pool_stack.build_of(ref)["image"]

    owner_name, version = ref.split("@")
    response = pool_stack.client.delete(f"/v1/algorithms/{owner_name}/versions/{version}",
                                        headers=pool_stack.auth)
    assert response.status_code == 200 and response.get_json()["status"] == "deleted"
    eventually(lambda: not pool_stack.containers_of(ref), 15, "the warm container to stop")
    eventually(lambda: not pool_stack.docker.images.list(name=image), 30, "the image to go")
    again = pool_stack.client.post("/v1/jobs", json={"algorithm": ref, "input": {}},
                                   headers=pool_stack.auth)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "build_not_ready"


def test_a_version_whose_image_was_pruned_is_built_again_on_its_next_call(
        pool_stack, tmp_path):
    ref = publish_variant(pool_stack, tmp_path, "a version whose image goes away")
    image = pool_stack.build_of(ref)["image"]
    pool_stack.docker.images.remove(image, force=True)  # as `algohost prune --images` would

    job = call(pool_stack, ref, {})
    assert job["status"] == "succeeded", job
    assert job["warm"] is False
    assert pool_stack.docker.images.list(name=image)
