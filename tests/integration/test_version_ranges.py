"""Version ranges and yanks, as a caller sees them through the API on a real Redis.

`owner/name@1` and `@1.2` resolve to the newest successful, unyanked version inside;
a yank hides a version from ranges and @latest while exact references keep working.
"""

import pytest

from tests.integration.test_api_redis import Api, algorithm, error_code

pytestmark = pytest.mark.integration


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


@pytest.fixture
def versions(api, tmp_path):
    """alice/hello at 0.1.0, 1.0.0, 1.1.0, 1.1.1 (all built) and 1.2.0 (still queued)."""
    made = {}
    for n, bump in enumerate([None, "major", "minor", "patch", "minor"]):
        response = api.publish(algorithm(tmp_path / f"v{n}", body=f"return {n}"), bump=bump)
        build = response.get_json()["build"]
        if n < 4:
            api.succeed(build)
        made[build["version"]] = build
    assert list(made) == ["0.1.0", "1.0.0", "1.1.0", "1.1.1", "1.2.0"]
    return made


def called(api, ref, headers=None):
    response = api.submit({"algorithm": ref, "input": 1}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def test_a_major_range_calls_its_newest_successful_version(api, versions):
    job = called(api, "alice/hello@1")
    assert job["algorithm"] == "alice/hello@1.1.1" and job["requested"] == "alice/hello@1"


def test_a_minor_range_stays_inside_its_minor(api, versions):
    assert called(api, "alice/hello@1.0")["algorithm"] == "alice/hello@1.0.0"
    assert called(api, "alice/hello@0")["algorithm"] == "alice/hello@0.1.0"


def test_a_range_with_no_successful_version_is_404_naming_the_range(api, versions):
    response = api.submit({"algorithm": "alice/hello@1.2", "input": 1})
    assert response.status_code == 404 and error_code(response) == "version_not_found"
    assert response.get_json()["error"]["details"]["range"] == "1.2"
    assert api.submit({"algorithm": "alice/hello@7", "input": 1}).status_code == 404


def test_a_yanked_version_is_skipped_by_ranges_and_latest_but_exact_still_calls_it(
        api, versions):
    yanked = api.client.post("/v1/algorithms/alice/hello/versions/1.1.1/yank",
                             headers=api.alice)
    assert yanked.status_code == 200 and yanked.get_json()["yanked"] is True
    assert called(api, "alice/hello@1")["algorithm"] == "alice/hello@1.1.0"
    assert called(api, "alice/hello@1.1")["algorithm"] == "alice/hello@1.1.0"
    assert called(api, "alice/hello")["algorithm"] == "alice/hello@1.1.0"
    assert called(api, "alice/hello@latest")["algorithm"] == "alice/hello@1.1.0"
    assert called(api, "alice/hello@1.1.1")["algorithm"] == "alice/hello@1.1.1"
    listed = api.client.get("/v1/algorithms/alice/hello/versions", headers=api.alice)
    assert [b["yanked"] for b in listed.get_json()["versions"]] == [False, True, False,
                                                                     False, False]


def test_unyank_lets_ranges_and_latest_pick_the_version_again(api, versions):
    api.client.post("/v1/algorithms/alice/hello/versions/1.1.1/yank", headers=api.alice)
    back = api.client.post("/v1/algorithms/alice/hello/versions/1.1.1/unyank",
                           headers=api.alice)
    assert back.status_code == 200 and back.get_json()["yanked"] is False
    assert called(api, "alice/hello@1")["algorithm"] == "alice/hello@1.1.1"
    assert called(api, "alice/hello")["algorithm"] == "alice/hello@1.1.1"


def test_yanking_every_version_of_a_range_leaves_it_empty(api, versions):
    for version in ("1.0.0", "1.1.0", "1.1.1"):
        api.client.post(f"/v1/algorithms/alice/hello/versions/{version}/yank",
                        headers=api.alice)
    assert api.submit({"algorithm": "alice/hello@1", "input": 1}).status_code == 404
    assert called(api, "alice/hello")["algorithm"] == "alice/hello@0.1.0"


def test_a_build_that_succeeds_after_its_yank_does_not_become_latest(api, versions):
    api.client.post("/v1/algorithms/alice/hello/versions/1.2.0/yank", headers=api.alice)
    api.registry.mark_succeeded(versions["1.2.0"]["id"])
    assert called(api, "alice/hello")["algorithm"] == "alice/hello@1.1.1"
    assert called(api, "alice/hello@1.2.0")["algorithm"] == "alice/hello@1.2.0"


def test_describing_a_range_reads_the_version_it_resolves_to(api, versions):
    one = api.client.get("/v1/algorithms/alice/hello/versions/1.1", headers=api.alice)
    assert one.status_code == 200 and one.get_json()["version"] == "1.1.1"


def test_yanking_an_unknown_version_is_404(api, versions):
    response = api.client.post("/v1/algorithms/alice/hello/versions/9.9.9/yank",
                               headers=api.alice)
    assert response.status_code == 404 and error_code(response) == "version_not_found"


def test_a_batch_takes_a_range_too(api, versions):
    response = api.client.post("/v1/batches", json={"algorithm": "alice/hello@1.1",
                                                    "inputs": [1, 2]}, headers=api.alice)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["algorithm"] == "alice/hello@1.1.1"
