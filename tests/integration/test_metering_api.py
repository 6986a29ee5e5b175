"""The metrics and usage routes through the HTTP API on a real Redis: what they answer,
and the 4xx they give for input they cannot take."""

import time

import pytest

from algohost.clock import iso
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.metrics import BuildMetrics
from algohost.store.usage import UsageLedger
from algohost.worker.metering import MetricsHook, UsageHook
from tests.integration.test_api_redis import Api, algorithm, error_code

pytestmark = pytest.mark.integration


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


@pytest.fixture
def versions(api, api_redis, tmp_path):
    """alice/hello 0.1.0 and 0.1.1, and the hooks that fold jobs into their metrics."""
    builds = []
    for n in range(2):
        build = api.publish(algorithm(tmp_path / f"v{n}", body=f"return {n}")).get_json()
        api.succeed(build["build"])
        builds.append(build["build"])
    hooks = [MetricsHook(BuildMetrics.from_settings(api_redis, api.settings)),
             UsageHook(UsageLedger.from_settings(api_redis, api.settings))]
    return builds, hooks


def finish(hooks, job_id, build, run_ms, finished_at=None, owner="alice"):
    job = JobRecord(id=job_id, owner=owner, status=JobStatus.SUCCEEDED, build_id=build["id"],
                    algorithm=build["ref"], finished_at=finished_at or iso(time.time()),
                    warm=True, metrics={"run_ms": run_ms, "total_ms": run_ms + 1,
                                        "peak_memory_bytes": 2**20})
    for hook in hooks:
        hook.job_finished(job)


def metrics(api, query="", headers=None):
    return api.client.get(f"/v1/algorithms/alice/hello/metrics{query}",
                          headers=headers or api.alice)


def test_metrics_show_the_named_versions_in_order(api, versions):
    builds, hooks = versions
    for n in range(20):
        finish(hooks, f"j_a{n}", builds[0], 10.0)
        finish(hooks, f"j_b{n}", builds[1], 40.0)
    reply = metrics(api, "?versions=0.1.1,0.1.0").get_json()
    assert [b["version"] for b in reply["builds"]] == ["0.1.1", "0.1.0"]
    slow, fast = reply["builds"]
    assert fast["calls"] == slow["calls"] == 20
    assert slow["run_ms"]["p50"] == pytest.approx(40.0, rel=0.05)
    assert fast["run_ms"]["p50"] == pytest.approx(10.0, rel=0.05)
    assert [b["version"] for b in metrics(api).get_json()["builds"]] == ["0.1.1", "0.1.0"]


def test_since_leaves_out_hours_before_it(api, versions):
    builds, hooks = versions
    finish(hooks, "j_old", builds[0], 10.0, finished_at=iso(time.time() - 3 * 86400))
    finish(hooks, "j_new", builds[0], 10.0)
    assert metrics(api, "?versions=0.1.0").get_json()["builds"][0]["calls"] == 2
    recent = metrics(api, "?versions=0.1.0&since=1d").get_json()
    assert recent["builds"][0]["calls"] == 1 and recent["since"].endswith(":00:00.000Z")
    day = iso(time.time() - 86400)[:10]
    assert metrics(api, f"?versions=0.1.0&since={day}").get_json()["builds"][0]["calls"] == 1


@pytest.mark.parametrize("query", ["?versions=1.x", "?versions=0.1.0,", "?since=yesterday",
                                   "?since=2026-13-45", "?since=99999d"])
def test_metrics_refuse_bad_queries_with_400(api, versions, query):
    response = metrics(api, query)
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_metrics_of_another_owners_or_a_missing_algorithm_are_refused(api, versions):
    # Private: to another owner it does not exist.
    assert metrics(api, headers=api.bob).status_code == 404
    assert metrics(api, "?versions=9.9.9").status_code == 404
    missing = api.client.get("/v1/algorithms/alice/nope/metrics", headers=api.alice)
    assert missing.status_code == 404 and error_code(missing) == "algorithm_not_found"


def test_usage_groups_by_what_is_asked_and_answers_payees_too(api, versions):
    builds, hooks = versions
    finish(hooks, "j_1", builds[0], 1500.0)
    finish(hooks, "j_2", builds[1], 500.0)
    report = api.client.get("/v1/usage?group_by=version", headers=api.alice).get_json()
    assert [(line["version"], line["compute_us"]) for line in report["lines"]] == [
        ("0.1.0", 1_500_000), ("0.1.1", 500_000)]
    assert report["total"]["compute_s"] == 2.0 and report["role"] == "payer"
    paid = api.client.get("/v1/usage?group_by=&role=payee", headers=api.alice).get_json()
    assert paid["group_by"] == [] and paid["lines"][0]["calls"] == 2
    assert api.client.get("/v1/usage", headers=api.bob).get_json()["total"]["calls"] == 0


@pytest.mark.parametrize("query", ["?group_by=owner", "?since=2026-02-30", "?role=thief",
                                   "?until=yesterday"])
def test_usage_refuses_bad_queries_with_400(api, query):
    response = api.client.get(f"/v1/usage{query}", headers=api.alice)
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_usage_names_the_days_it_read(api):
    def read(query):
        return api.client.get(f"/v1/usage{query}", headers=api.alice).get_json()

    long = read("?since=2020-01-01&until=2026-01-01")
    assert (long["since"], long["until"]) == ("2025-01-01", "2026-01-01")  # 366 days
    backwards = read("?since=2026-03-02&until=2026-03-01")
    assert backwards["lines"] == [] and backwards["total"]["calls"] == 0
    assert read("?until=0001-01-05")["since"] == "0001-01-01"


def test_the_openapi_document_describes_both_routes(api):
    paths = api.client.get("/v1/openapi.json").get_json()["paths"]
    assert "402" in paths["/v1/jobs"]["post"]["responses"]
    assert "/v1/usage" in paths
    assert "/v1/algorithms/{owner}/{name}/metrics" in paths
