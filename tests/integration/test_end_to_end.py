"""A call's whole life through the real parts: API -> Redis -> Celery worker -> Docker.

The worker is a real `celery worker` process on its own Redis database; the API
is the Flask app under its test client, sending real Celery messages.
"""


import docker
import pytest

from tests.receiver import Receiver
from tests.stack import EXAMPLES, TEST_ALGORITHMS, call, publish, publish_own
from tests.waiting import eventually


@pytest.fixture(scope="module")
def published(stack, tmp_path_factory):
    refs = {}
    for name in ("hello", "failing", "pg_version"):
        refs[name] = publish(stack, EXAMPLES / name)
    for name in ("memhog", "netcheck", "writer"):
        refs[name] = publish(stack, TEST_ALGORITHMS / name)
    # Tests here count the sleeper's running containers: none of other modules' may count.
    refs["sleeper"] = publish_own(stack, TEST_ALGORITHMS / "sleeper",
                                  tmp_path_factory.mktemp("sleeper"), "end-to-end's own")
    return refs


def test_hello_round_trip_records_output_and_metrics(stack, published):
    job = call(stack, published["hello"], {"name": "Ada"})
    assert job["status"] == "succeeded", job
    assert job["output"] == {"greeting": "Hello, Ada!"}
    assert job["algorithm"] == published["hello"]
    metrics = job["metrics"]
    for key in ("queue_ms", "cold_start_ms", "run_ms", "total_ms", "peak_memory_bytes"):
        assert metrics[key] >= 0, key
    assert metrics["total_ms"] >= metrics["run_ms"]
    assert metrics["peak_memory_bytes"] > 0


def test_latest_resolves_to_the_newest_successful_build(stack, published):
    job = call(stack, "alice/hello", "Grace")
    assert job["status"] == "succeeded"
    assert job["algorithm"] == published["hello"]


def test_psycopg2_builds_from_source_against_libpq(stack, published):
    job = call(stack, published["pg_version"], None)
    assert job["status"] == "succeeded", job
    assert job["output"]["libpq_version"] >= 150000


def test_exception_is_reported_with_type_message_and_traceback(stack, published):
    job = call(stack, published["failing"], {"x": 1})
    assert job["status"] == "failed"
    assert job["reason"] == "exception"
    assert job["error"]["type"] == "ValueError"
    assert "required" in job["error"]["message"]
    assert "main.py" in job["error"]["traceback"]
    assert "about to validate" in job["logs"]


def test_timeout_kills_container_and_reports_timed_out(stack, published):
    job = call(stack, published["sleeper"], 60, timeout_s=2)
    assert job["status"] == "timed_out", job  # a minute's sleep, ended at its timeout
    # The kill is sent before the job is marked; the engine reports it stopped a moment later.
    eventually(lambda: not stack.containers_of(published["sleeper"], running_only=True), 15,
               "the timed-out container to stop")


def test_memory_hog_is_stopped_and_reported_oom(stack, published):
    job = call(stack, published["memhog"], 1024)
    assert job["status"] == "failed", job
    assert job["reason"] == "oom"


def test_no_network_inside_the_sandbox(stack, published):
    job = call(stack, published["netcheck"], None)
    assert job["status"] == "succeeded", job
    assert job["output"]["interfaces"] == ["lo"]
    assert job["output"]["error"] == "ENETUNREACH"


def test_root_filesystem_is_read_only_and_tmp_is_writable(stack, published):
    job = call(stack, published["writer"], None)
    assert job["status"] == "succeeded", job
    assert job["output"] == {"opt": False, "tmp": True}


def test_cancel_of_a_running_job_kills_its_container(stack, published):
    job = stack.post_job(published["sleeper"], 60, timeout_s=120)
    stack.wait_for_job(job["id"], lambda j: j["status"] == "running", 60, "to start")
    eventually(lambda: stack.containers_of(published["sleeper"], running_only=True), 60,
               "the job's container to run")
    response = stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=stack.auth)
    assert response.status_code == 200
    assert response.get_json()["status"] == "canceled"
    eventually(lambda: not stack.containers_of(published["sleeper"], running_only=True), 15,
               "the container to stop after the cancel")
    assert stack.get_job(job["id"])["status"] == "canceled"


def test_another_owner_gets_403_for_a_job_and_404_for_a_private_algorithm(stack, published):
    job = call(stack, published["hello"], "x")
    other = {"Authorization": f"Bearer {stack.other_key}"}
    assert stack.client.get(f"/v1/jobs/{job['id']}", headers=other).status_code == 403
    response = stack.client.post("/v1/jobs", json={"algorithm": published["hello"], "input": 1},
                                 headers=other)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "algorithm_not_found"


def test_failed_build_keeps_its_logs_and_is_not_callable(stack, tmp_path):
    (tmp_path / "algorithm.toml").write_text(
        'name = "broken"\nentrypoint = "main:apply"\n'
        '[build]\nsystem_packages = ["no-such-package-algohost"]\n')
    (tmp_path / "main.py").write_text("def apply(x):\n    return x\n")
    build = publish(stack, tmp_path, expect="failed")
    assert "no-such-package-algohost" in build["logs"]
    response = stack.client.post("/v1/jobs", json={"algorithm": "alice/broken", "input": 1},
                                 headers=stack.auth)
    assert response.status_code in (404, 409)


def test_images_are_labelled_for_pruning(stack, published):
    client = docker.DockerClient(base_url=stack.settings.sandbox.docker_url)
    images = client.images.list(filters={"label": "algohost.build"})
    tags = {tag for image in images for tag in image.tags}
    assert any(tag.startswith("algohost/alice/hello:") for tag in tags)


def test_an_output_nested_300_deep_fails_the_call_and_every_page_and_webhook_still_render(
        stack):
    # Before, the worker stored it: the job, the job list and the results page then
    # answered 500 and the completed webhook was never sent.
    ref = publish(stack, TEST_ALGORITHMS / "hostile")
    deep = {"do": "deep", "levels": 300}
    hook = Receiver().start()
    try:
        job = call(stack, ref, deep, webhook=hook.url)
        assert job["status"] == "failed" and job["reason"] == "output_too_large", job
        assert job["error"]["type"] == "OutputTooDeep"
        listed = stack.client.get("/v1/jobs", headers=stack.auth)
        assert listed.status_code == 200
        assert job["id"] in [j["id"] for j in listed.get_json()["jobs"]]
        [event] = hook.wait_for(1, timeout_s=60)
        assert b"output_too_large" in event.body
    finally:
        hook.stop()
    created = stack.client.post("/v1/batches", json={"algorithm": ref, "inputs": [deep]},
                                headers=stack.auth).get_json()
    eventually(lambda: stack.client.get(f"/v1/batches/{created['id']}", headers=stack.auth)
               .get_json()["status"] == "completed", timeout_s=120, what="the batch to finish")
    page = stack.client.get(f"/v1/batches/{created['id']}/results", headers=stack.auth)
    assert page.status_code == 200
    assert page.get_json()["results"][0]["reason"] == "output_too_large"
