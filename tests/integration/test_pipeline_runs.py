"""Pipeline runs on the real stack: the iris example's steps built and run as jobs in
containers by a real Celery worker, advanced by its job hook and its reaper.
"""


import pytest

from algohost.cli.client import ApiClient
from algohost.dev.demo import example_directories, run_pipeline_example
from algohost.pipeline import load_spec_text
from tests.stack import EXAMPLES, TEST_ALGORITHMS, publish, publish_own
from tests.waiting import eventually

pytestmark = pytest.mark.integration

IRIS = EXAMPLES / "pipeline_iris"
STEPS = ("prepare", "train_centroid", "train_knn", "evaluate", "pick")


@pytest.fixture(scope="module")
def iris(stack):
    """The example's four algorithms, published as the stack's owner, and its spec."""
    for directory in ("prepare", "train", "evaluate", "pick"):
        publish(stack, IRIS / directory)
    spec = load_spec_text((IRIS / "pipeline.toml").read_text(), "pipeline.toml")
    response = stack.client.post(f"/v1/pipelines/{stack.owner}/iris", json=spec,
                                 headers=stack.auth)
    assert response.status_code in (200, 201), response.get_json()
    return spec


def start(stack, name, payload, **options):
    response = stack.client.post(f"/v1/pipelines/{stack.owner}/{name}/runs",
                                 json={"input": payload, **options}, headers=stack.auth)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def view(stack, run_id):
    return stack.read(f"/v1/pipeline-runs/{run_id}")


def finished(stack, run_id, timeout_s=240):
    return stack.until_not_running(f"/v1/pipeline-runs/{run_id}", timeout_s)


def job_count(stack):
    return stack.redis.zcard(f"algohost:jobs:owner:{stack.owner}")


def test_the_iris_pipeline_runs_each_step_as_a_job_and_picks_a_model(stack, iris):
    run = finished(stack, start(stack, "iris", {"test_fraction": 0.3, "seed": 7}, cache=False))
    assert run["status"] == "succeeded", run
    steps = {step["name"]: step for step in run["steps"]}
    assert set(steps) == set(STEPS)
    for step in steps.values():
        assert step["status"] == "succeeded" and not step["cached"], step
        job = stack.get_job(step["job_id"])
        assert job["status"] == "succeeded" and job["algorithm"] == step["algorithm"]
        assert step["metrics"]["run_ms"] >= 0 and step["duration_ms"] is not None
    # The two trainings ran side by side: neither waited for the other.
    assert steps["train_knn"]["needs"] == ["prepare"] == steps["train_centroid"]["needs"]
    for name in ("train_centroid", "train_knn"):
        assert [a["name"] for a in steps[name]["artifacts"]] == ["model.json"]
    assert run["output"]["best"] in ("centroid", "knn")
    assert run["output"]["accuracy"] == max(s["accuracy"] for s in run["output"]["ranking"])


def test_a_rerun_of_the_unchanged_pipeline_runs_nothing(stack, iris):
    first = finished(stack, start(stack, "iris", {"test_fraction": 0.25, "seed": 3}))
    assert first["status"] == "succeeded", first
    stack.drain()
    before = job_count(stack)
    again = finished(stack, start(stack, "iris", {"test_fraction": 0.25, "seed": 3}))
    assert again["status"] == "succeeded", again
    assert job_count(stack) == before  # not one job more
    sources = {step["name"]: step["job_id"] or step["cache_source"] for step in first["steps"]}
    for step in again["steps"]:
        assert step["cached"] and step["cache_source"] == sources[step["name"]], step
    trained = {s["name"]: s for s in again["steps"]}["train_knn"]
    assert [a["name"] for a in trained["artifacts"]] == ["model.json"]  # reused too
    assert again["output"] == first["output"]


def test_changing_one_step_reruns_it_and_its_descendants_only(stack, iris):
    payload = {"test_fraction": 0.2, "seed": 11}
    assert finished(stack, start(stack, "iris", payload))["status"] == "succeeded"
    changed = {**iris, "steps": {**iris["steps"], "train_knn": {
        **iris["steps"]["train_knn"], "input": {**iris["steps"]["train_knn"]["input"], "k": 1}}}}
    response = stack.client.post(f"/v1/pipelines/{stack.owner}/iris-k1", json=changed,
                                 headers=stack.auth)
    assert response.status_code == 201, response.get_json()
    run = finished(stack, start(stack, "iris-k1", payload))
    assert run["status"] == "succeeded", run
    ran = {step["name"] for step in run["steps"] if not step["cached"]}
    assert ran == {"train_knn", "evaluate", "pick"}


def test_a_failed_step_skips_its_descendants_and_the_run_says_why(stack, iris):
    hello = publish(stack, TEST_ALGORITHMS / "hello")
    spec = {"steps": {
        "ok": {"algorithm": hello, "input": "fine"},
        "boom": {"algorithm": hello, "input": {"raise": "$input.why"}},
        "after_boom": {"algorithm": hello, "input": "$steps.boom.output"},
        "after_ok": {"algorithm": hello, "input": "$steps.ok.output.hello"}}}
    assert stack.client.post(f"/v1/pipelines/{stack.owner}/breaks", json=spec,
                             headers=stack.auth).status_code == 201
    run = finished(stack, start(stack, "breaks", {"why": "no data"}))
    steps = {step["name"]: step for step in run["steps"]}
    assert run["status"] == "failed" and run["failed_step"] == "boom"
    assert "no data" in run["error"]["message"]
    assert steps["boom"]["error"]["type"] == "ValueError"
    assert steps["after_boom"]["status"] == "skipped"
    assert steps["after_boom"]["reason"] == "upstream_failed"
    assert steps["after_ok"]["status"] == "succeeded"  # the other branch ran on


def test_a_run_survives_its_worker_being_killed(stack, tmp_path):
    sleeper = publish_own(stack, TEST_ALGORITHMS / "sleeper", tmp_path, "pipeline kill test")
    hello = publish(stack, TEST_ALGORITHMS / "hello")
    spec = {"steps": {"nap": {"algorithm": sleeper, "input": 3},
                      "wake": {"algorithm": hello, "input": "$steps.nap.output"}}}
    assert stack.client.post(f"/v1/pipelines/{stack.owner}/naps", json=spec,
                             headers=stack.auth).status_code == 201
    run_id = start(stack, "naps", None, cache=False)

    def napping():
        step = {s["name"]: s for s in view(stack, run_id)["steps"]}["nap"]
        return step["status"] == "running"

    eventually(napping, 120, lambda: f"the nap step to run: {stack.worker_log()}")
    stack.kill_worker()
    stack.start_worker()  # the same node: its reaper gives the lost job back
    run = finished(stack, run_id, timeout_s=300)
    assert run["status"] == "succeeded", run
    steps = {step["name"]: step for step in run["steps"]}
    assert stack.get_job(steps["nap"]["job_id"])["attempts"] >= 2
    assert steps["wake"]["status"] == "succeeded"


def test_the_demo_publishes_the_example_pipelines_algorithms_and_runs_it(stack, iris):
    assert {IRIS / name for name in ("prepare", "train", "evaluate", "pick")} <= set(
        example_directories(EXAMPLES))
    with stack.serving() as url:
        run = run_pipeline_example(ApiClient(url, stack.key), EXAMPLES, owner=stack.owner)
    assert run is not None and run.status.value == "succeeded", run
    assert run.output["best"] in ("centroid", "knn")
