"""Pipelines against a real Redis: the API checks and stores specs and starts runs, and the
scheduler advances them, with step jobs finished here the way a worker finishes them.

No worker or container runs: what a step's algorithm returns is written by the test, so
each story controls exactly which step succeeds, fails, or is still running.
"""

import time

import pytest

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.clock import now_iso
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.store.fairshare import FairShare
from algohost.store.jobs import JobStatus, JobStore
from algohost.store.keys import KeyStore
from algohost.store.limits import LimitStore
from algohost.store.pipelines import PipelineStore
from algohost.store.registry import Registry
from algohost.submission import JobSubmitter
from algohost.worker.pipelines import PipelineHook, Scheduler, redrive_due_runs
from algohost.worker.planning import LOST_SUBMIT_S
from tests.waiting import ManualClock

pytestmark = pytest.mark.integration

IRIS = {
    "description": "prepare, train two variants, evaluate both, pick the better",
    "steps": {
        "prepare": {"algorithm": "alice/prep", "input": {"rows": "$input.rows"}},
        "train_a": {"algorithm": "alice/train",
                    "input": {"data": "$steps.prepare.output.train", "kind": "centroid"}},
        "train_b": {"algorithm": "alice/train",
                    "input": {"data": "$steps.prepare.output.train", "kind": "knn", "k": 3}},
        "evaluate": {"algorithm": "alice/evaluate",
                     "input": {"models": ["$steps.train_a.output", "$steps.train_b.output"],
                               "test": "$steps.prepare.output.test"}},
        "pick": {"algorithm": "alice/pick", "input": "$steps.evaluate.output"},
    },
    "output": {"best": "$steps.pick.output.best", "literal": "$$input"},
}


class Pipelines:
    """The API and a scheduler on one Redis database; `finish` plays the worker."""

    def __init__(self, redis_client, redis_url, tmp_path):
        self.settings = Settings(redis_url=redis_url)
        self.dispatcher = RecordingDispatcher()
        self.client = create_app(self.settings, dispatcher=self.dispatcher,
                                 docker_ping=lambda: True).test_client()
        keys = KeyStore(redis_client)
        self.alice = {"Authorization": f"Bearer {keys.create('alice')}"}
        self.bob = {"Authorization": f"Bearer {keys.create('bob')}"}
        self.registry = Registry(redis_client)
        self.jobs = JobStore(redis_client, 3600)
        self.runs = PipelineStore(redis_client, 3600)
        fair = FairShare(redis_client, LimitStore(redis_client, self.settings),
                         self.dispatcher.enqueue_run, JobStore.key(""))
        self.clock = ManualClock()
        submitter = JobSubmitter(self.jobs, fair, self.dispatcher.enqueue_run, 3600)
        self.scheduler = Scheduler(self.runs, self.jobs, self.registry, submitter, 60,
                                   clock=self.clock)
        self.hook = PipelineHook(self.scheduler.advance, self.dispatcher.enqueue_pipeline)
        self.tmp_path = tmp_path
        for name in ("prep", "train", "evaluate", "pick"):
            self.publish_algorithm(name)

    def publish_algorithm(self, name, note="", owner="alice"):
        root = self.tmp_path / f"{owner}-{name}{note}"
        root.mkdir()
        (root / "algorithm.toml").write_text(f'name = "{name}"\nentrypoint = "main:apply"\n')
        (root / "main.py").write_text(f"def apply(x):\n    return x\n# {note}\n")
        auth = self.alice if owner == "alice" else self.bob
        response = self.client.post(f"/v1/algorithms/{owner}/{name}/versions",
                                    data=make_archive(root),
                                    headers={**auth, "Content-Type": "application/gzip"})
        assert response.status_code in (200, 202), response.get_json()
        build = response.get_json()["build"]
        self.registry.mark_succeeded(build["id"])
        return build["ref"]

    def publish(self, spec, name="iris"):
        return self.client.post(f"/v1/pipelines/alice/{name}", json=spec, headers=self.alice)

    def start(self, payload=None, name="iris", **options):
        response = self.client.post(f"/v1/pipelines/alice/{name}/runs",
                                    json={"input": payload, **options}, headers=self.alice)
        assert response.status_code == 202, response.get_json()
        run = response.get_json()
        self.advance(run["id"])
        return run["id"]

    def advance(self, run_id):
        """What the advance task does, for every advance message sent so far."""
        while self.dispatcher.pipelines:
            self.scheduler.advance(self.dispatcher.pipelines.pop(0))
        return self.scheduler.advance(run_id)

    def view(self, run_id):
        response = self.client.get(f"/v1/pipeline-runs/{run_id}", headers=self.alice)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def steps(self, run_id):
        return {step["name"]: step for step in self.view(run_id)["steps"]}

    def job_of(self, run_id, step):
        job_id = self.steps(run_id)[step]["job_id"]
        assert job_id, f"step {step} has no job"
        return self.jobs.get(job_id)

    def finish(self, run_id, step, output=None, status=JobStatus.SUCCEEDED):
        """Run the step's job as a worker would: claim it, record the outcome, fire hooks."""
        job = self.job_of(run_id, step)
        claimed, _ = self.jobs.claim(job.id, "test-worker", now_iso(), time.time() + 60)
        assert claimed
        error = None if status is JobStatus.SUCCEEDED else {
            "type": "ValueError", "message": f"{step} broke", "traceback": None}
        assert self.jobs.transition(job.id, status, {JobStatus.RUNNING}, output=output,
                                    error=error, finished_at=now_iso(),
                                    reason="succeeded" if error is None else "exception")
        self.hook.job_finished(self.jobs.get(job.id))
        self.advance(run_id)

    def run_iris(self, rows=4):
        """A whole run of IRIS, each step answering as the test example algorithms would."""
        run_id = self.start({"rows": rows})
        if self.steps(run_id)["prepare"]["status"] == "queued":
            self.finish(run_id, "prepare", {"train": list(range(rows)), "test": [rows]})
        steps = self.steps(run_id)
        for name in ("train_a", "train_b"):
            if steps[name]["status"] == "queued":
                job = self.job_of(run_id, name)
                self.finish(run_id, name, {"kind": job.input["kind"], "k": job.input.get("k")})
        if self.steps(run_id)["evaluate"]["status"] == "queued":
            models = self.job_of(run_id, "evaluate").input["models"]
            self.finish(run_id, "evaluate", {"scores": [0.9, 0.95], "models": models})
        if self.steps(run_id)["pick"]["status"] == "queued":
            self.finish(run_id, "pick", {"best": 1})
        return run_id


@pytest.fixture
def pipes(api_redis, api_redis_url, tmp_path):
    return Pipelines(api_redis, api_redis_url, tmp_path)


def error_of(response):
    return response.get_json()["error"]


# Publishing ----------------------------------------------------------------------------


def test_publishing_stores_a_version_and_the_same_spec_again_keeps_it(pipes):
    first = pipes.publish(IRIS)
    assert first.status_code == 201, first.get_json()
    version = first.get_json()
    assert version["version"] == 1
    assert version["order"][0] == "prepare" and version["order"][-1] == "pick"
    assert version["needs"]["evaluate"] == ["train_a", "train_b", "prepare"]
    again = pipes.publish(IRIS)
    assert again.status_code == 200 and again.get_json()["version"] == 1
    changed = pipes.publish({**IRIS, "description": "another"})
    assert changed.status_code == 201 and changed.get_json()["version"] == 2
    latest = pipes.client.get("/v1/pipelines/alice/iris", headers=pipes.alice).get_json()
    assert latest["version"] == 2
    old = pipes.client.get("/v1/pipelines/alice/iris/versions/1", headers=pipes.alice)
    assert old.get_json()["spec"]["description"] == IRIS["description"]


def test_a_reference_to_an_unknown_step_is_a_400_naming_it(pipes):
    spec = {"steps": {"a": {"algorithm": "alice/prep"},
                      "b": {"algorithm": "alice/train", "input": {"x": "$steps.nope.output"}}}}
    error = error_of(pipes.publish(spec))
    assert error["code"] == "unknown_step"
    assert error["details"]["problems"] == [
        {"field": "steps.b.input.x", "reference": "$steps.nope.output", "step": "nope"}]
    assert "nope" in error["message"]


def test_a_string_that_looks_like_a_reference_but_is_none_is_refused(pipes):
    spec = {"steps": {"a": {"algorithm": "alice/prep", "input": ["$inptu.x"]}}}
    response = pipes.publish(spec)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_reference"
    assert error["details"]["problems"][0]["field"] == "steps.a.input.0"


def test_a_cycle_is_refused_with_the_steps_in_it(pipes):
    spec = {"steps": {
        "a": {"algorithm": "alice/prep", "input": "$steps.c.output"},
        "b": {"algorithm": "alice/train", "input": "$steps.a.output"},
        "c": {"algorithm": "alice/evaluate", "input": "$steps.b.output"}}}
    error = error_of(pipes.publish(spec))
    assert error["code"] == "pipeline_cycle"
    assert set(error["details"]["cycle"]) == {"a", "b", "c"}


def test_a_step_that_calls_an_unpublished_algorithm_is_named(pipes):
    spec = {"steps": {"a": {"algorithm": "alice/prep"}, "b": {"algorithm": "alice/ghost"}}}
    error = error_of(pipes.publish(spec))
    assert error["code"] == "unknown_algorithm"
    assert error["details"]["problems"] == [
        {"field": "steps.b.algorithm", "step": "b", "algorithm": "alice/ghost"}]


def test_a_step_may_call_another_owners_algorithm_only_while_it_is_public(pipes):
    pipes.publish_algorithm("shared", owner="bob")
    spec = {"steps": {"a": {"algorithm": "bob/shared"}}}
    refused = pipes.publish(spec)
    assert refused.status_code == 404  # private: unknown to alice
    assert error_of(refused)["code"] == "unknown_algorithm"
    pipes.registry.set_visibility("bob", "shared", "public")
    assert pipes.publish(spec).status_code == 201
    run_id = pipes.start("hi")
    assert pipes.job_of(run_id, "a").owner == "alice"  # alice's call, of bob's algorithm
    pipes.registry.set_visibility("bob", "shared", "private")
    again = pipes.client.post("/v1/pipelines/alice/iris/runs", json={}, headers=pipes.alice)
    assert error_of(again)["code"] == "unknown_algorithm"


def test_a_malformed_spec_is_a_400_with_its_fields(pipes):
    response = pipes.publish({"steps": {"Bad Name": {"algorithm": "alice/prep"}}, "x": 1})
    assert response.status_code == 400
    assert error_of(response)["code"] in ("invalid_request", "invalid_pipeline")


# Running -------------------------------------------------------------------------------


def test_a_run_fans_out_and_in_with_each_input_resolved(pipes):
    assert pipes.publish(IRIS).status_code == 201
    run_id = pipes.start({"rows": 4})
    steps = pipes.steps(run_id)
    assert steps["prepare"]["status"] == "queued"
    assert {steps[n]["status"] for n in ("train_a", "train_b", "evaluate", "pick")} == {"pending"}
    assert pipes.job_of(run_id, "prepare").input == {"rows": 4}
    assert pipes.job_of(run_id, "prepare").owner == "alice"
    pipes.finish(run_id, "prepare", {"train": [1, 2], "test": [3]})
    steps = pipes.steps(run_id)
    assert steps["train_a"]["status"] == steps["train_b"]["status"] == "queued"  # fan-out
    assert pipes.job_of(run_id, "train_b").input == {"data": [1, 2], "kind": "knn", "k": 3}
    pipes.finish(run_id, "train_a", {"m": "a"})
    assert pipes.steps(run_id)["evaluate"]["status"] == "pending"  # fan-in waits for both
    pipes.finish(run_id, "train_b", {"m": "b"})
    assert pipes.job_of(run_id, "evaluate").input == {"models": [{"m": "a"}, {"m": "b"}],
                                                      "test": [3]}
    pipes.finish(run_id, "evaluate", {"scores": [1, 2]})
    pipes.finish(run_id, "pick", {"best": "b"})
    run = pipes.view(run_id)
    assert run["status"] == "succeeded", run
    assert run["output"] == {"best": "b", "literal": "$input"}
    assert all(step["finished_at"] and step["duration_ms"] is not None for step in run["steps"])
    assert not pipes.runs.due_runs(time.time() + 3600)  # a finished run is never re-driven


def test_a_failed_step_stops_its_descendants_and_independent_branches_run_on(pipes):
    spec = {"steps": {
        "root": {"algorithm": "alice/prep"},
        "left": {"algorithm": "alice/train", "input": "$steps.root.output"},
        "left_child": {"algorithm": "alice/evaluate", "input": "$steps.left.output"},
        "right": {"algorithm": "alice/train", "input": {"r": "$steps.root.output"}},
        "right_child": {"algorithm": "alice/pick", "input": "$steps.right.output"}}}
    pipes.publish(spec, name="branches")
    run_id = pipes.start(1, name="branches")
    pipes.finish(run_id, "root", 1)
    pipes.finish(run_id, "left", status=JobStatus.FAILED)
    run = pipes.view(run_id)
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["left_child"]["status"] == "skipped"
    assert steps["left_child"]["reason"] == "upstream_failed"
    assert steps["right"]["status"] == "queued"  # the other branch is untouched
    assert run["status"] == "running" and run["failed_step"] == "left"
    pipes.finish(run_id, "right", 2)
    pipes.finish(run_id, "right_child", 3)
    run = pipes.view(run_id)
    assert run["status"] == "failed"
    assert run["reason"] == "step_failed" and run["failed_step"] == "left"
    assert "left broke" in run["error"]["message"]
    assert {s["name"]: s["status"] for s in run["steps"]}["right_child"] == "succeeded"


def test_an_output_key_that_is_not_there_fails_the_step_that_needs_it(pipes):
    spec = {"steps": {"a": {"algorithm": "alice/prep"},
                      "b": {"algorithm": "alice/train", "input": "$steps.a.output.missing"}}}
    pipes.publish(spec, name="gap")
    run_id = pipes.start(None, name="gap")
    pipes.finish(run_id, "a", {"present": 1})
    run = pipes.view(run_id)
    assert run["status"] == "failed" and run["failed_step"] == "b"
    step = {s["name"]: s for s in run["steps"]}["b"]
    assert step["reason"] == "input_unresolved" and "missing" in step["error"]["message"]


# Caching -------------------------------------------------------------------------------


def test_a_rerun_of_an_unchanged_pipeline_runs_nothing(pipes):
    pipes.publish(IRIS)
    first = pipes.run_iris()
    submitted = len(pipes.dispatcher.runs)
    second = pipes.start({"rows": 4})
    run = pipes.view(second)
    assert run["status"] == "succeeded", run
    assert len(pipes.dispatcher.runs) == submitted  # no job at all
    first_steps = pipes.steps(first)
    for step in run["steps"]:
        assert step["cached"] and step["job_id"] is None and step["reason"] == "cached"
        assert step["cache_source"] == first_steps[step["name"]]["job_id"]
    assert run["output"] == pipes.view(first)["output"]


def test_changing_one_step_reruns_it_and_its_descendants_only(pipes):
    pipes.publish(IRIS)
    pipes.run_iris()
    changed = {**IRIS, "steps": {**IRIS["steps"], "train_b": {
        "algorithm": "alice/train",
        "input": {"data": "$steps.prepare.output.train", "kind": "knn", "k": 5}}}}
    assert pipes.publish(changed).get_json()["version"] == 2
    rerun = pipes.run_iris()
    steps = pipes.steps(rerun)
    assert {name for name, step in steps.items() if step["cached"]} == {"prepare", "train_a"}
    assert {name for name, step in steps.items() if not step["cached"]} == {
        "train_b", "evaluate", "pick"}
    assert pipes.view(rerun)["status"] == "succeeded"


def test_a_new_build_of_one_steps_algorithm_reruns_that_step(pipes):
    pipes.publish(IRIS)
    pipes.run_iris()
    pipes.publish_algorithm("pick", note="v2")
    rerun = pipes.run_iris()
    assert {n for n, s in pipes.steps(rerun).items() if not s["cached"]} == {"pick"}


def test_cache_false_on_the_run_or_on_a_step_runs_again(pipes):
    pipes.publish(IRIS)
    pipes.run_iris()
    run_id = pipes.start({"rows": 4}, cache=False)
    assert pipes.steps(run_id)["prepare"]["status"] == "queued"
    no_prepare_cache = {**IRIS, "steps": {**IRIS["steps"], "prepare": {
        **IRIS["steps"]["prepare"], "cache": False}}}
    pipes.publish(no_prepare_cache)
    run_id = pipes.start({"rows": 4})
    assert pipes.steps(run_id)["prepare"]["status"] == "queued"


# Surviving loss ------------------------------------------------------------------------


def test_a_step_whose_job_never_got_its_record_is_submitted_again(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 4})
    lost = pipes.job_of(run_id, "prepare")
    pipes.jobs.redis.delete(JobStore.key(lost.id))  # as if its scheduler died before the submit
    pipes.advance(run_id)
    assert pipes.steps(run_id)["prepare"]["job_id"] == lost.id  # not yet: it may be on its way
    pipes.clock.advance(LOST_SUBMIT_S + 1)
    pipes.advance(run_id)
    step = pipes.steps(run_id)["prepare"]
    assert step["job_id"] != lost.id and step["attempts"] == 2 and step["status"] == "queued"


def test_the_reaper_redrives_runs_overdue_for_a_check(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 4})
    pipes.dispatcher.pipelines.clear()
    assert redrive_due_runs(pipes.runs, pipes.dispatcher.enqueue_pipeline, 60) == []
    sent = redrive_due_runs(pipes.runs, pipes.dispatcher.enqueue_pipeline, 60,
                            now=time.time() + 61)
    assert sent == [run_id] and pipes.dispatcher.pipelines == [run_id]


def test_advancing_twice_submits_each_step_once(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 4})
    before = list(pipes.dispatcher.runs)
    pipes.advance(run_id)
    pipes.advance(run_id)
    assert pipes.dispatcher.runs == before


# Reading -------------------------------------------------------------------------------


def test_runs_and_pipelines_are_their_owners_only(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 1})
    assert pipes.client.get(f"/v1/pipeline-runs/{run_id}", headers=pipes.bob).status_code == 403
    assert pipes.client.get("/v1/pipelines/alice/iris", headers=pipes.bob).status_code == 403
    missing = pipes.client.get("/v1/pipeline-runs/pr_nothing", headers=pipes.alice)
    assert error_of(missing)["code"] == "pipeline_run_not_found"
    unknown = pipes.client.post("/v1/pipelines/alice/none/runs", json={}, headers=pipes.alice)
    assert error_of(unknown)["code"] == "pipeline_not_found"


def test_a_run_of_a_step_with_no_successful_build_is_refused_naming_the_step(pipes):
    spec = {"steps": {"a": {"algorithm": "alice/prep@9.9.9"}}}
    pipes.publish(spec, name="pinned")
    response = pipes.client.post("/v1/pipelines/alice/pinned/runs", json={},
                                 headers=pipes.alice)
    assert response.status_code == 404
    assert error_of(response)["details"]["step"] == "a"


def test_a_finished_steps_worker_advances_the_run_or_else_sends_a_message(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 4})
    job = pipes.job_of(run_id, "prepare")
    assert pipes.jobs.claim(job.id, "test-worker", now_iso(), time.time() + 60)[0]
    pipes.jobs.transition(job.id, JobStatus.SUCCEEDED, {JobStatus.RUNNING},
                          output={"train": [1], "test": [2]}, finished_at=now_iso())

    def broken(run_id):
        raise ConnectionError("the store went away")

    sent = []
    PipelineHook(broken, sent.append).job_finished(pipes.jobs.get(job.id))
    assert sent == [run_id]
    assert pipes.steps(run_id)["train_a"]["status"] == "pending"  # nothing moved yet
    pipes.hook.job_finished(pipes.jobs.get(job.id))  # the working path advances at once
    assert pipes.steps(run_id)["train_a"]["status"] == "queued"


def test_runs_are_listed_newest_first_by_owner_and_by_pipeline(pipes):
    pipes.publish(IRIS)
    pipes.publish({"steps": {"a": {"algorithm": "prep"}}}, name="other")
    first, other, second = (pipes.start({"rows": 1}), pipes.start(1, name="other"),
                            pipes.start({"rows": 2}))

    def listed(query, headers=None):
        response = pipes.client.get(f"/v1/pipeline-runs{query}", headers=headers or pipes.alice)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    assert [r["id"] for r in listed("")["runs"]] == [second, other, first]
    page = listed("?pipeline=iris&limit=1")
    assert [r["id"] for r in page["runs"]] == [second] and page["next_cursor"] == "1"
    rest = listed(f"?pipeline=iris&limit=1&cursor={page['next_cursor']}")
    assert [r["id"] for r in rest["runs"]] == [first] and rest["next_cursor"] is None
    assert listed("", pipes.bob)["runs"] == []


def test_canceling_a_run_cancels_its_steps_under_way_and_starts_no_other(pipes):
    pipes.publish(IRIS)
    run_id = pipes.start({"rows": 4})
    pipes.finish(run_id, "prepare", {"train": [1], "test": [2]})
    train_a = pipes.job_of(run_id, "train_a")
    response = pipes.client.post(f"/v1/pipeline-runs/{run_id}/cancel", headers=pipes.alice)
    assert response.status_code == 200, response.get_json()
    run = response.get_json()
    assert run["status"] == "canceled" and run["reason"] == "canceled"
    steps = {step["name"]: step for step in run["steps"]}
    assert steps["prepare"]["status"] == "succeeded"
    assert steps["train_a"]["status"] == steps["train_b"]["status"] == "canceled"
    assert steps["evaluate"]["status"] == "skipped" and steps["evaluate"]["reason"] == "canceled"
    assert pipes.jobs.get(train_a.id).status is JobStatus.CANCELED
    submitted = list(pipes.dispatcher.runs)
    pipes.advance(run_id)
    assert pipes.dispatcher.runs == submitted and pipes.view(run_id)["status"] == "canceled"
    again = pipes.client.post(f"/v1/pipeline-runs/{run_id}/cancel", headers=pipes.alice)
    assert again.status_code == 409
    assert error_of(again)["code"] == "pipeline_run_not_cancelable"
    other = pipes.client.post(f"/v1/pipeline-runs/{run_id}/cancel", headers=pipes.bob)
    assert other.status_code == 403
