"""The API's own memory against a real Redis: batch bodies are counted before they are
parsed, and pages of jobs or batch results end at a byte budget as well as a count."""

import json
import tracemalloc

import pytest

from algohost.store.batches import BatchStore
from tests.integration.test_limits_api import built
from tests.integration.test_limits_api import make_api as make_api  # noqa: F401 - fixture

pytestmark = pytest.mark.integration
MiB = 1024 * 1024
NDJSON = {"Content-Type": "application/x-ndjson"}


def post_batch(api, body, headers=None, query=""):
    return api.client.post(f"/v1/batches{query}", data=body,
                           headers={**api.alice, "Content-Type": "application/json",
                                    **(headers or {})})


def test_a_body_of_millions_of_tiny_values_is_refused_before_it_is_parsed(make_api, tmp_path):
    api = make_api(max_batch_values=100_000)
    build = built(api, tmp_path)
    body = (b'{"algorithm": "' + build["ref"].encode() + b'", "inputs": ['
            + b",".join([b"{}"] * 2_000_000) + b"]}")
    tracemalloc.start()
    try:
        response = post_batch(api, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "too_many_values" and error["details"]["limit"] == 100_000
    # Two million parsed dicts alone would take over 100 MB; the scan copies the body once.
    assert peak < 4 * len(body), peak


def test_separators_inside_strings_do_not_count_as_values(make_api, tmp_path):
    api = make_api(max_batch_values=100)
    build = built(api, tmp_path)
    text = "a, b: [c], {d}" * 100
    body = json.dumps({"algorithm": build["ref"], "inputs": [text, text]}).encode()
    response = post_batch(api, body)
    assert response.status_code == 202, response.get_json()


def test_a_jsonl_body_over_the_input_count_is_refused_without_decoding_it(make_api, tmp_path):
    api = make_api(max_batch_inputs=1000)
    build = built(api, tmp_path)
    body = b"\n".join([b"1"] * 5000) + b"\n"
    response = post_batch(api, body, NDJSON, f"?algorithm={build['ref']}")
    assert response.status_code == 413, response.get_json()
    assert response.get_json()["error"]["details"]["inputs"] == 5000


def test_blank_jsonl_lines_do_not_count_toward_the_input_limit(make_api, tmp_path):
    api = make_api(max_batch_inputs=10)
    build = built(api, tmp_path)
    body = b"\n\n\n".join([b"1"] * 10) + b"\n"
    response = post_batch(api, body, NDJSON, f"?algorithm={build['ref']}")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["total"] == 10


def test_a_job_list_page_ends_at_the_byte_budget_and_the_cursor_goes_on(make_api, tmp_path):
    api = make_api(max_page_bytes=int(2.5 * MiB))
    build = built(api, tmp_path)
    ids = [api.submit({"algorithm": build["ref"], "input": n}).get_json()["id"]
           for n in range(5)]
    for job_id in ids:
        api.jobs.update(job_id, output="x" * MiB)
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=10" + (f"&cursor={cursor}" if cursor else "")
        page = api.client.get(f"/v1/jobs{query}", headers=api.alice).get_json()
        assert 1 <= len(page["jobs"]) <= 2
        seen += [job["id"] for job in page["jobs"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == sorted(ids) and len(seen) == len(ids)


def test_a_results_page_ends_at_the_byte_budget_and_the_cursor_goes_on(make_api, tmp_path,
                                                                        api_redis):
    api = make_api(max_page_bytes=int(2.5 * MiB))
    build = built(api, tmp_path)
    created = post_batch(api, json.dumps({"algorithm": build["ref"],
                                          "inputs": list(range(5))}).encode())
    batch_id = created.get_json()["id"]
    BatchStore(api_redis, 60).record_results(
        batch_id, {n: {"status": "succeeded", "output": "x" * MiB} for n in range(5)},
        "2026-01-01T00:00:00.000Z")
    indices, cursor = [], "0"
    while cursor is not None:
        page = api.client.get(f"/v1/batches/{batch_id}/results?limit=100&cursor={cursor}",
                              headers=api.alice).get_json()
        assert 1 <= len(page["results"]) <= 2
        indices += [result["index"] for result in page["results"]]
        cursor = page["next_cursor"]
    assert indices == list(range(5))


def test_a_bad_job_list_cursor_is_400(make_api):
    api = make_api()
    response = api.client.get("/v1/jobs?cursor=abc", headers=api.alice)
    assert response.status_code == 400
