"""Idempotency keys on submits, against a real Redis: a retry under the same key gets the
job or batch its first try made; the same key for another request is refused."""

import pytest

from algohost.api import create_app
from algohost.api.idempotency import request_fingerprint
from algohost.api.schemas import JobCreate
from algohost.config import Settings
from algohost.store.idempotency import IdempotencyKeys, Reservation
from algohost.store.jobs import JobStatus
from tests.integration.test_api_redis import Api, algorithm, error_code

pytestmark = pytest.mark.integration

@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


KEY = {"Idempotency-Key": "8d0c9a52-4d1f-4bb8-a0d6-3b2f1e7c9a10"}


@pytest.fixture
def built(api, tmp_path):
    build = api.publish(algorithm(tmp_path / "hello")).get_json()["build"]
    api.succeed(build)
    return build


def test_a_retried_submit_with_the_same_key_returns_the_first_job(api, built):
    first = api.submit({"algorithm": built["ref"], "input": 1}, **KEY)
    again = api.submit({"algorithm": built["ref"], "input": 1}, **KEY)
    assert first.status_code == 202 and again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Location"] == f"/v1/jobs/{first.get_json()['id']}"
    assert api.dispatcher.runs == [first.get_json()["id"]]


def test_a_replay_of_a_finished_job_answers_200_with_its_output(api, built):
    job_id = api.submit({"algorithm": built["ref"], "input": 1}, **KEY).get_json()["id"]
    assert api.jobs.transition(job_id, JobStatus.RUNNING)
    assert api.jobs.transition(job_id, JobStatus.SUCCEEDED, output={"echo": 1})
    again = api.submit({"algorithm": built["ref"], "input": 1}, **KEY)
    assert again.status_code == 200
    assert again.get_json()["status"] == "succeeded" and again.get_json()["output"] == {"echo": 1}


def test_the_same_key_with_another_body_is_422_naming_the_first_job(api, built):
    job_id = api.submit({"algorithm": built["ref"], "input": 1}, **KEY).get_json()["id"]
    other = api.submit({"algorithm": built["ref"], "input": 2}, **KEY)
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    assert other.get_json()["error"]["details"]["id"] == job_id
    assert len(api.dispatcher.runs) == 1


def test_keys_belong_to_their_owner(api, built, tmp_path):
    bob_build = api.publish(algorithm(tmp_path / "bob"), headers=api.bob, owner="bob"
                            ).get_json()["build"]
    api.succeed(bob_build)
    alices = api.submit({"algorithm": built["ref"], "input": 1}, **KEY)
    bobs = api.submit({"algorithm": bob_build["ref"], "input": 1}, headers=api.bob, **KEY)
    assert bobs.status_code == 202 and bobs.get_json()["id"] != alices.get_json()["id"]


def test_without_a_key_every_submit_makes_a_job(api, built):
    ids = {api.submit({"algorithm": built["ref"], "input": 1}).get_json()["id"]
           for _ in range(2)}
    assert len(ids) == 2


def test_a_malformed_key_is_400(api, built):
    response = api.submit({"algorithm": built["ref"], "input": 1},
                          **{"Idempotency-Key": "has space"})
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert "Idempotency-Key" in response.get_json()["error"]["message"]


def keys_of(api):
    return IdempotencyKeys(api.jobs.redis, "job", api.jobs.key(""),
                           api.settings.idempotency_ttl_s)


def test_a_key_whose_submit_died_before_its_record_is_taken_over_by_the_retry(api, built):
    body = {"algorithm": built["ref"], "input": 1}
    same = request_fingerprint(JobCreate.model_validate(body))
    keys = keys_of(api)
    # The API reserved j_lost and died before writing it, long enough ago.
    keys.clock = lambda: 0.0
    assert keys.reserve("alice", KEY["Idempotency-Key"], same, "j_lost").state is Reservation.NEW
    retried = api.submit(body, **KEY)
    assert retried.status_code == 202 and retried.get_json()["id"] != "j_lost"
    assert api.dispatcher.runs == [retried.get_json()["id"]]
    assert api.submit(body, **KEY).get_json()["id"] == retried.get_json()["id"]


def test_a_key_reserved_a_moment_ago_without_its_record_is_409_retry_after(api, built):
    body = {"algorithm": built["ref"], "input": 1}
    keys_of(api).reserve("alice", KEY["Idempotency-Key"],
                         request_fingerprint(JobCreate.model_validate(body)), "j_making")
    response = api.submit(body, **KEY)
    assert response.status_code == 409 and error_code(response) == "idempotency_key_in_use"
    assert int(response.headers["Retry-After"]) >= 1
    assert api.dispatcher.runs == []


def test_a_refused_submit_gives_its_key_back_for_the_retry(api_redis, api_redis_url, tmp_path):
    api = Api(api_redis, api_redis_url)
    api.settings = Settings(redis_url=api_redis_url, owner_submits_per_s=0.001,
                            owner_submit_burst=1)
    api.client = create_app(api.settings, dispatcher=api.dispatcher,
                            docker_ping=lambda: True).test_client()
    build = api.publish(algorithm(tmp_path / "hello")).get_json()["build"]
    api.succeed(build)
    assert api.submit({"algorithm": build["ref"], "input": 0}).status_code == 202
    refused = api.submit({"algorithm": build["ref"], "input": 1}, **KEY)
    assert refused.status_code == 429
    # The key is free again: were it still held, the retry would be 409 or a replay.
    claim = keys_of(api).reserve("alice", KEY["Idempotency-Key"], "another", "j_next")
    assert claim.state is Reservation.NEW


def test_a_retried_batch_with_the_same_key_returns_the_first_batch(api, built):
    body = {"algorithm": built["ref"], "inputs": [1, 2, 3]}
    first = api.client.post("/v1/batches", json=body, headers={**api.alice, **KEY})
    again = api.client.post("/v1/batches", json=body, headers={**api.alice, **KEY})
    assert first.status_code == 202 and again.status_code == 202
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(api.dispatcher.batches) == 1
    other = api.client.post("/v1/batches", json={**body, "inputs": [4]},
                            headers={**api.alice, **KEY})
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"


def test_the_document_describes_the_header_on_both_submits(api):
    document = api.client.get("/v1/openapi.json").get_json()
    for path in ("/v1/jobs", "/v1/batches"):
        operation = document["paths"][path]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
                   for p in operation["parameters"])
        assert "422" in operation["responses"]
