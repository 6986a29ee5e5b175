"""Quotas through the HTTP API against a real Redis: manifest caps at publish, per-owner
limits (429s), `GET /v1/limits`, fair share seen by a caller, and waiting on a GET."""

import threading

import pytest

from algohost.api import create_app
from algohost.config import Settings
from algohost.store.jobs import JobStatus
from algohost.store.limits import LimitStore
from tests.integration.test_api_redis import Api, algorithm, error_code

pytestmark = pytest.mark.integration


class LimitedApi(Api):
    def __init__(self, redis_client, redis_url, **settings):
        super().__init__(redis_client, redis_url)
        self.settings = Settings(redis_url=redis_url, max_wait_s=5, **settings)
        self.client = create_app(self.settings, dispatcher=self.dispatcher,
                                 docker_ping=lambda: True).test_client()
        self.limits = LimitStore(redis_client, self.settings)


@pytest.fixture
def make_api(api_redis, api_redis_url):
    return lambda **settings: LimitedApi(api_redis, api_redis_url, **settings)


def built(api, tmp_path, name="hello"):
    build = api.publish(algorithm(tmp_path / name, name=name), name=name).get_json()["build"]
    api.succeed(build)
    return build


def test_a_manifest_over_an_operator_cap_is_refused_naming_the_cap(make_api, tmp_path):
    api = make_api(max_memory_mb=1024, max_cpus=1.0, max_timeout_s=60)
    for resources, cap in (("memory_mb = 2048", "1024"), ("cpus = 1.5", "at most 1"),
                           ("timeout_s = 120", "60")):
        root = algorithm(tmp_path / resources.split()[0], extra=f"[resources]\n{resources}\n")
        response = api.publish(root)
        assert response.status_code == 400, response.get_json()
        assert error_code(response) == "invalid_manifest"
        assert cap in response.get_json()["error"]["message"]
    assert api.publish(algorithm(tmp_path / "ok", extra="[resources]\nmemory_mb = 1024\n")
                       ).status_code == 202


def test_a_publish_past_the_owners_stored_builds_is_429(make_api, tmp_path):
    api = make_api(owner_max_builds=1)
    built(api, tmp_path, "first")
    response = api.publish(algorithm(tmp_path / "second", name="second"), name="second")
    assert response.status_code == 429 and error_code(response) == "limit_reached"


def test_limits_report_the_callers_limits_and_use(make_api, tmp_path):
    api = make_api(owner_max_running=1)
    api.limits.set("alice", max_queued=7)  # before the API caches alice's limits
    build = built(api, tmp_path)
    for n in range(3):
        assert api.submit({"algorithm": build["ref"], "input": n}).status_code == 202
    body = api.client.get("/v1/limits", headers=api.alice).get_json()
    assert body["owner"] == "alice"
    assert body["limits"]["max_running"] == 1 and body["limits"]["max_queued"] == 7
    assert body["usage"] == {"running": 1, "waiting": 2, "builds": 1, "compute_s_today": 0.0}
    assert body["limits"]["compute_s_per_day"] == 0.0  # no budget unless one is set
    assert body["manifest"]["max_memory_mb"] == api.settings.max_memory_mb
    assert api.client.get("/v1/limits", headers=api.bob).get_json()["usage"]["running"] == 0


def test_over_the_submit_rate_the_api_answers_429_with_retry_after(make_api, tmp_path):
    api = make_api(owner_submits_per_s=0.01, owner_submit_burst=1)
    build = built(api, tmp_path)
    assert api.submit({"algorithm": build["ref"], "input": 1}).status_code == 202
    refused = api.submit({"algorithm": build["ref"], "input": 2})
    assert refused.status_code == 429 and error_code(refused) == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(api.dispatcher.runs) == 1


def test_over_the_queued_limit_the_api_answers_429_and_keeps_no_record(make_api, tmp_path):
    api = make_api(owner_max_queued=1)
    build = built(api, tmp_path)
    assert api.submit({"algorithm": build["ref"], "input": 1}).status_code == 202
    refused = api.submit({"algorithm": build["ref"], "input": 2})
    assert refused.status_code == 429 and error_code(refused) == "limit_reached"
    assert len(api.client.get("/v1/jobs", headers=api.alice).get_json()["jobs"]) == 1


def test_one_owners_flood_is_held_back_and_another_owners_call_is_sent(make_api, tmp_path):
    api = make_api(owner_max_running=2)
    build = built(api, tmp_path)
    flood = [api.submit({"algorithm": build["ref"], "input": n}).get_json()["id"]
             for n in range(20)]
    assert api.dispatcher.runs == flood[:2]
    bob_build = api.publish(algorithm(tmp_path / "bob"), headers=api.bob, owner="bob"
                            ).get_json()["build"]
    api.succeed(bob_build)
    bob_job = api.submit({"algorithm": bob_build["ref"], "input": 0}, headers=api.bob)
    assert api.dispatcher.runs[-1] == bob_job.get_json()["id"]


def test_canceling_a_sent_job_sends_the_owners_next_one(make_api, tmp_path):
    api = make_api(owner_max_running=1)
    build = built(api, tmp_path)
    first, second = (api.submit({"algorithm": build["ref"], "input": n}).get_json()["id"]
                     for n in range(2))
    assert api.client.post(f"/v1/jobs/{first}/cancel", headers=api.alice).status_code == 200
    assert api.dispatcher.runs == [first, second]


def test_a_get_with_prefer_wait_returns_when_the_job_finishes(make_api, tmp_path):
    api = make_api()
    build = built(api, tmp_path)
    job_id = api.submit({"algorithm": build["ref"], "input": 1}).get_json()["id"]
    started = threading.Event()

    def finish():
        started.wait()
        api.jobs.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED})
        api.jobs.transition(job_id, JobStatus.SUCCEEDED, {JobStatus.RUNNING}, output=2)

    worker = threading.Thread(target=finish)
    worker.start()
    started.set()
    response = api.client.get(f"/v1/jobs/{job_id}", headers={**api.alice, "Prefer": "wait=5"})
    worker.join()
    assert response.status_code == 200 and response.headers["Preference-Applied"] == "wait=5"
    assert response.get_json()["status"] == "succeeded"


def test_a_bad_prefer_on_a_get_is_400(make_api, tmp_path):
    api = make_api()
    build = built(api, tmp_path)
    job_id = api.submit({"algorithm": build["ref"], "input": 1}).get_json()["id"]
    response = api.client.get(f"/v1/jobs/{job_id}", headers={**api.alice, "Prefer": "wait="})
    assert response.status_code == 400 and error_code(response) == "invalid_prefer"
