"""Batch and webhook endpoints against a real Redis, with a recording dispatcher.

No worker runs: tests write chunk results through the store as a worker would.
"""

import json

import pytest

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.store.batches import BatchStore
from algohost.store.keys import KeyStore
from algohost.store.registry import Registry

pytestmark = pytest.mark.integration
NDJSON = {"Content-Type": "application/x-ndjson"}


class Api:
    def __init__(self, redis_client, redis_url, **settings):
        self.settings = Settings(redis_url=redis_url, max_batch_inputs=50, batch_chunk_size=4,
                                 **settings)
        self.dispatcher = RecordingDispatcher()
        self.client = create_app(self.settings, dispatcher=self.dispatcher,
                                 docker_ping=lambda: True).test_client()
        self.batches = BatchStore(redis_client, 3600)
        keys = KeyStore(redis_client)
        self.alice = {"Authorization": f"Bearer {keys.create('alice')}"}
        self.bob = {"Authorization": f"Bearer {keys.create('bob')}"}
        self.registry = Registry(redis_client)

    def publish(self, root):
        root.mkdir(parents=True, exist_ok=True)
        (root / "algorithm.toml").write_text('name = "hello"\nentrypoint = "main:apply"\n')
        (root / "main.py").write_text("def apply(x):\n    return x\n")
        response = self.client.post("/v1/algorithms/alice/hello/versions",
                                    data=make_archive(root),
                                    headers={**self.alice, "Content-Type": "application/gzip"})
        build = response.get_json()["build"]
        self.registry.update_build(build["id"], status="succeeded")
        return build["ref"]

    def post(self, path, headers=None, **kwargs):
        return self.client.post(path, headers={**self.alice, **(headers or {})}, **kwargs)

    def get(self, path, headers=None):
        return self.client.get(path, headers=headers or self.alice)


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


@pytest.fixture
def ref(api, tmp_path):
    return api.publish(tmp_path / "hello")


def code(response):
    return response.get_json()["error"]["code"]


def test_a_json_batch_is_accepted_and_fanned_out_in_chunks(api, ref):
    response = api.post("/v1/batches", json={"algorithm": ref, "inputs": list(range(10))})
    assert response.status_code == 202, response.get_json()
    batch = response.get_json()
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert batch["status"] == "running" and batch["total"] == 10
    assert batch["counts"]["pending"] == 10 and batch["progress"] == 0
    assert api.dispatcher.batches == [(batch["id"], [(0, 4), (4, 8), (8, 10)])]


def test_a_jsonl_upload_names_its_algorithm_in_the_query(api, ref):
    response = api.post(f"/v1/batches?algorithm={ref}", headers=NDJSON,
                        data=b'{"a": 1}\n2\n')
    assert response.status_code == 202, response.get_json()
    batch_id = response.get_json()["id"]
    assert api.batches.inputs(batch_id, 0, 2) == [{"a": 1}, 2]


def test_too_many_inputs_is_413(api, ref):
    response = api.post("/v1/batches", json={"algorithm": ref, "inputs": list(range(51))})
    assert response.status_code == 413 and code(response) == "too_many_inputs"


def test_counts_progress_and_results_in_input_order(api, ref):
    batch_id = api.post("/v1/batches", json={"algorithm": ref,
                                             "inputs": list(range(5))}).get_json()["id"]
    api.batches.record_results(batch_id, {
        3: {"status": "failed", "reason": "exception",
            "error": {"type": "ValueError", "message": "no", "traceback": None}},
        0: {"status": "succeeded", "reason": "succeeded", "output": 0,
            "metrics": {"run_ms": 1.0, "peak_memory_bytes": 1}}}, "2026-01-01T00:00:00.000Z")
    batch = api.get(f"/v1/batches/{batch_id}").get_json()
    assert batch["counts"] == {"pending": 3, "succeeded": 1, "failed": 1, "timed_out": 0,
                               "canceled": 0}
    assert batch["progress"] == 0.4
    page = api.get(f"/v1/batches/{batch_id}/results?limit=2").get_json()
    assert [r["status"] for r in page["results"]] == ["succeeded", "pending"]
    assert page["results"][0] == {"index": 0, "status": "succeeded", "reason": "succeeded",
                                  "output": 0, "metrics": {"run_ms": 1.0,
                                                           "peak_memory_bytes": 1}}
    page = api.get(f"/v1/batches/{batch_id}/results?cursor={page['next_cursor']}"
                   "&limit=2").get_json()
    assert [r["index"] for r in page["results"]] == [2, 3]
    assert page["results"][1]["error"]["type"] == "ValueError"
    last = api.get(f"/v1/batches/{batch_id}/results?cursor=4").get_json()
    assert [r["index"] for r in last["results"]] == [4] and last["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["%C2%B2", "-1", "1.0", "x"])
def test_a_cursor_that_is_not_ascii_digits_is_400_not_500(api, ref, cursor):
    # "²" passes str.isdigit() but int() refuses it.
    batch_id = api.post("/v1/batches", json={"algorithm": ref, "inputs": [1]}).get_json()["id"]
    response = api.get(f"/v1/batches/{batch_id}/results?cursor={cursor}")
    assert response.status_code == 400 and code(response) == "invalid_request"


def test_json_lines_events_named_twice_in_the_query_count_once(api, ref):
    response = api.post("/v1/batches?algorithm=alice/hello&webhook=https://example.com/h"
                        "&webhook_events=started,completed,started", headers=NDJSON,
                        data=b"1\n2\n")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["webhook_events"] == ["started", "completed"]


def test_an_input_nested_past_the_limit_is_400_not_stored(api, ref):
    deep = 1
    for _ in range(300):
        deep = [deep]
    response = api.post("/v1/batches", json={"algorithm": ref, "inputs": [1, deep]})
    assert response.status_code == 400 and code(response) == "invalid_request"
    assert api.dispatcher.batches == []


def test_cancel_once_then_409_and_the_batch_is_anothers_to_nobody(api, ref):
    batch_id = api.post("/v1/batches", json={"algorithm": ref, "inputs": [1]}).get_json()["id"]
    assert api.get(f"/v1/batches/{batch_id}", headers=api.bob).status_code == 403
    response = api.post(f"/v1/batches/{batch_id}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "canceled"
    again = api.post(f"/v1/batches/{batch_id}/cancel")
    assert again.status_code == 409 and code(again) == "batch_not_cancelable"
    assert api.get("/v1/batches/b_nope").status_code == 404


def test_a_private_literal_webhook_is_refused_without_the_opt_in(api, ref):
    response = api.post("/v1/jobs", json={"algorithm": ref, "input": 1,
                                          "webhook": "http://127.0.0.1:9/hook"})
    assert response.status_code == 400 and code(response) == "webhook_refused"
    assert api.dispatcher.runs == []


def test_the_opt_in_accepts_a_private_webhook(api_redis, api_redis_url, tmp_path):
    api = Api(api_redis, api_redis_url, webhook_allow_private=True)
    ref = api.publish(tmp_path / "hello")
    response = api.post("/v1/jobs", json={"algorithm": ref, "input": 1,
                                          "webhook": "http://127.0.0.1:9/hook",
                                          "webhook_events": ["started", "completed"]})
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["webhook"] == "http://127.0.0.1:9/hook"
    assert job["webhook_events"] == ["started", "completed"]


def test_a_canceled_job_sends_completed_with_status_canceled(api, ref):
    job = api.post("/v1/jobs", json={"algorithm": ref, "input": 1,
                                     "webhook": "https://hooks.example/x"}).get_json()
    assert api.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    [delivery] = api.get(f"/v1/jobs/{job['id']}/webhooks").get_json()["deliveries"]
    assert delivery["event"] == "completed" and delivery["state"] == "pending"
    assert api.dispatcher.webhooks == [(delivery["id"], 0, 0, 0.0)]
    body = json.loads(api.client.application.extensions["algohost"].webhooks.get(
        delivery["id"]).body)
    assert body["status"] == "canceled"
    assert body == api.get(f"/v1/jobs/{job['id']}").get_json()


def test_redeliver_starts_again_and_404_without_deliveries(api, ref):
    job = api.post("/v1/jobs", json={"algorithm": ref, "input": 1,
                                     "webhook": "https://hooks.example/x"}).get_json()
    assert api.post(f"/v1/jobs/{job['id']}/webhooks/redeliver").status_code == 404
    api.post(f"/v1/jobs/{job['id']}/cancel")
    response = api.post(f"/v1/jobs/{job['id']}/webhooks/redeliver")
    assert response.status_code == 202 and response.get_json()["state"] == "pending"
    assert api.dispatcher.webhooks[-1][1] == 1  # a new generation


def test_the_signing_key_is_the_owners_own(api):
    alice = api.get("/v1/webhooks/secret").get_json()["secret"]
    assert alice.startswith("whsec_")
    assert api.get("/v1/webhooks/secret").get_json()["secret"] == alice
    assert api.get("/v1/webhooks/secret", headers=api.bob).get_json()["secret"] != alice
    rotated = api.post("/v1/webhooks/secret/rotate").get_json()["secret"]
    assert rotated != alice and api.get("/v1/webhooks/secret").get_json()["secret"] == rotated
