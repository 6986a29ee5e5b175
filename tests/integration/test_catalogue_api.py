"""The catalogue through the API on a real Redis: visibility, listing and search, calls by
another owner, royalties, and private algorithms that other owners cannot tell exist.
"""

import pytest

from tests.integration.test_api_redis import Api, algorithm, error_code

pytestmark = pytest.mark.integration

PUBLIC_MANIFEST = '''description = "Greets people by name, politely"
royalty_micros = 1500
visibility = "public"

[parameters]
name = "who to greet"
'''


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


def publish_built(api, root, name, extra="", headers=None, owner="alice"):
    response = api.publish(algorithm(root, name=name, extra=extra), name=name, owner=owner,
                           headers=headers)
    assert response.status_code == 202, response.get_json()
    build = response.get_json()["build"]
    api.succeed(build)
    return build


@pytest.fixture
def greeter(api, tmp_path):
    """alice/greeter, public by its manifest, with a royalty; alice/hidden, private."""
    publish_built(api, tmp_path / "hidden", "hidden")
    return publish_built(api, tmp_path / "greeter", "greeter", PUBLIC_MANIFEST)


def test_a_manifest_makes_an_algorithm_public_and_the_catalogue_lists_it(api, greeter):
    listing = api.client.get("/v1/algorithms?visibility=public", headers=api.bob).get_json()
    assert listing["algorithms"] == [{
        "owner": "alice", "name": "greeter", "latest": "0.1.0", "versions": ["0.1.0"],
        "visibility": "public", "description": "Greets people by name, politely",
        "parameters": {"name": "who to greet"}, "royalty_micros": 1500}]


def test_search_matches_the_name_description_and_parameters_in_any_case(api, greeter):
    for word in ("POLITE", "greet", "who to", "alice/gr"):
        found = api.client.get(f"/v1/algorithms?visibility=public&q={word}", headers=api.bob)
        assert [a["name"] for a in found.get_json()["algorithms"]] == ["greeter"], word
    nothing = api.client.get("/v1/algorithms?visibility=public&q=hidden", headers=api.bob)
    assert nothing.get_json()["algorithms"] == []


def test_the_owner_lists_both_and_filters_by_visibility(api, greeter):
    mine = api.client.get("/v1/algorithms", headers=api.alice).get_json()["algorithms"]
    assert [(a["name"], a["visibility"]) for a in mine] == [("greeter", "public"),
                                                           ("hidden", "private")]
    private = api.client.get("/v1/algorithms?visibility=private", headers=api.alice)
    assert [a["name"] for a in private.get_json()["algorithms"]] == ["hidden"]


def test_visibility_changes_through_the_api_and_only_its_owner_may_change_it(api, greeter):
    made = api.client.put("/v1/algorithms/alice/hidden/visibility",
                          json={"visibility": "public"}, headers=api.alice)
    assert made.status_code == 200 and made.get_json()["visibility"] == "public"
    listed = api.client.get("/v1/algorithms?visibility=public", headers=api.bob).get_json()
    assert [a["name"] for a in listed["algorithms"]] == ["greeter", "hidden"]
    refused = api.client.put("/v1/algorithms/alice/greeter/visibility",
                             json={"visibility": "private"}, headers=api.bob)
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    back = api.client.put("/v1/algorithms/alice/greeter/visibility",
                          json={"visibility": "private"}, headers=api.alice)
    assert back.get_json()["visibility"] == "private"
    assert api.submit({"algorithm": "alice/greeter", "input": 1},
                      headers=api.bob).status_code == 404


def test_an_unknown_visibility_is_400(api, greeter, tmp_path):
    response = api.client.put("/v1/algorithms/alice/greeter/visibility",
                              json={"visibility": "everyone"}, headers=api.alice)
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    bad = api.publish(algorithm(tmp_path / "bad", name="bad", extra='visibility = "open"\n'),
                      name="bad")
    assert bad.status_code == 400 and error_code(bad) == "invalid_manifest"
    assert bad.get_json()["error"]["details"]["key"] == "visibility"


def test_another_owner_calls_a_public_algorithm_as_their_own_job_and_pays_its_royalty(
        api, greeter):
    response = api.submit({"algorithm": "alice/greeter@0", "input": "Bob"}, headers=api.bob)
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["algorithm"] == "alice/greeter@0.1.0" and job["royalty_micros"] == 1500
    record = api.jobs.get(job["id"])
    assert record.owner == "bob" and record.royalty_micros == 1500
    bobs = api.client.get("/v1/jobs", headers=api.bob).get_json()["jobs"]
    assert [j["id"] for j in bobs] == [job["id"]]
    assert api.client.get("/v1/jobs", headers=api.alice).get_json()["jobs"] == []
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=api.alice).status_code == 403


def test_the_author_calling_their_own_algorithm_pays_no_royalty(api, greeter):
    job = api.submit({"algorithm": "alice/greeter", "input": "Al"}).get_json()
    assert job["royalty_micros"] == 0
    build = api.client.get("/v1/algorithms/alice/greeter/versions/0.1.0", headers=api.alice)
    assert build.get_json()["royalty_micros"] == 1500


def test_a_royalty_out_of_range_is_refused_at_publish(api, tmp_path):
    for value in ("-1", "1000000001", '"5"', "1.5"):
        response = api.publish(algorithm(tmp_path / f"r{len(value)}{value[0]}", name="roy",
                                         extra=f"royalty_micros = {value}\n"), name="roy")
        assert response.status_code == 400, value
        assert response.get_json()["error"]["details"]["key"] == "royalty_micros"


def test_a_public_algorithm_is_readable_by_others_without_its_build_logs(api, greeter):
    api.registry.append_log(greeter["id"], "pip install from a private index\n")
    theirs = api.client.get("/v1/algorithms/alice/greeter/versions/0.1.0", headers=api.bob)
    assert theirs.status_code == 200 and theirs.get_json().get("logs") is None
    mine = api.client.get("/v1/algorithms/alice/greeter/versions/0.1.0", headers=api.alice)
    assert "private index" in mine.get_json()["logs"]
    listed = api.client.get("/v1/algorithms/alice/greeter/versions", headers=api.bob)
    assert listed.status_code == 200


def test_others_may_call_but_never_change_a_public_algorithm(api, greeter):
    base = "/v1/algorithms/alice/greeter"
    for response in (api.client.post(f"{base}/versions/0.1.0/yank", headers=api.bob),
                     api.client.post(f"{base}/versions/0.1.0/unyank", headers=api.bob),
                     api.client.delete(f"{base}/versions/0.1.0", headers=api.bob),
                     api.client.get(f"{base}/secrets", headers=api.bob),
                     api.client.get(f"{base}/versions/0.1.0/logs", headers=api.bob),
                     api.client.get(f"{base}/metrics", headers=api.bob)):
        assert response.status_code == 403, response.get_json()
    assert api.dispatcher.retired == []


def attempts_on(api, name, headers):
    """Every route that names an algorithm, as another owner would try them."""
    base = f"/v1/algorithms/alice/{name}"
    client = api.client
    return {
        "versions": client.get(f"{base}/versions", headers=headers),
        "version": client.get(f"{base}/versions/0.1.0", headers=headers),
        "latest": client.get(f"{base}/versions/latest", headers=headers),
        "range": client.get(f"{base}/versions/0", headers=headers),
        "logs": client.get(f"{base}/versions/0.1.0/logs", headers=headers),
        "metrics": client.get(f"{base}/metrics", headers=headers),
        "yank": client.post(f"{base}/versions/0.1.0/yank", headers=headers),
        "unyank": client.post(f"{base}/versions/0.1.0/unyank", headers=headers),
        "delete": client.delete(f"{base}/versions/0.1.0", headers=headers),
        "visibility": client.put(f"{base}/visibility", json={"visibility": "public"},
                                 headers=headers),
        "secrets": client.get(f"{base}/secrets", headers=headers),
        "secret": client.put(f"{base}/secrets/TOKEN", json={"value": "x"}, headers=headers),
        "unsecret": client.delete(f"{base}/secrets/TOKEN", headers=headers),
        "job": client.post("/v1/jobs", json={"algorithm": f"alice/{name}", "input": 1},
                           headers=headers),
        "range job": client.post("/v1/jobs", json={"algorithm": f"alice/{name}@0",
                                                   "input": 1}, headers=headers),
        "batch": client.post("/v1/batches", json={"algorithm": f"alice/{name}",
                                                  "inputs": [1]}, headers=headers),
    }


def test_a_private_algorithm_answers_another_owner_exactly_as_a_missing_one(api, greeter):
    hidden = attempts_on(api, "hidden", api.bob)
    missing = attempts_on(api, "nosuch", api.bob)
    for route, response in hidden.items():
        assert response.status_code == 404, (route, response.get_json())
        assert error_code(response) == "algorithm_not_found", route
        body = response.get_data(as_text=True).replace("hidden", "NAME")
        assert body == missing[route].get_data(as_text=True).replace("nosuch", "NAME"), route
    assert api.dispatcher.runs == [] and api.dispatcher.batches == []
    listing = api.client.get("/v1/algorithms?visibility=public&q=hidden", headers=api.bob)
    assert listing.get_json()["algorithms"] == []
