"""The API without any service: error shapes, the health check, the OpenAPI document.

Redis points at a closed port here, so anything that would need it shows up as a
failing test instead of a hidden dependency.
"""

import re

import pytest
from flask import request

from algohost.api import create_app
from algohost.api.openapi import openapi_path
from algohost.api.routing import ROUTES
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher

NO_REDIS = "redis://127.0.0.1:1/0"


@pytest.fixture
def app():
    settings = Settings(redis_url=NO_REDIS, max_input_bytes=1024, max_upload_bytes=2048)
    app = create_app(settings, dispatcher=RecordingDispatcher(), docker_ping=lambda: True)

    def boom():
        raise RuntimeError("secret internal detail")

    def echo_size():
        return {"size": len(request.get_data())}

    app.add_url_rule("/test/boom", view_func=boom)
    app.add_url_rule("/test/echo", view_func=echo_size, methods=["POST"])
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def test_unknown_route_is_a_json_404(client):
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.is_json
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_is_a_json_405_with_allow(client):
    response = client.delete("/v1/jobs")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_missing_key_is_401_before_anything_else(client):
    response = client.post("/v1/jobs", json={"algorithm": "a/b", "input": 1})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_non_bearer_scheme_is_401(client):
    response = client.get("/v1/whoami", headers={"Authorization": "Basic YTpi"})
    assert response.status_code == 401


def test_unexpected_error_is_a_json_500_without_the_details(client, caplog):
    response = client.get("/test/boom")
    assert response.status_code == 500
    body = response.get_json()
    assert body["error"]["code"] == "internal_error"
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text


def test_body_beyond_the_hard_cap_is_a_json_413(app, client):
    too_big = app.config["MAX_CONTENT_LENGTH"] + 1
    response = client.post("/test/echo", data=b"x" * too_big)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_health_is_degraded_when_redis_is_down(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "degraded", "redis": False, "docker": True}


def test_health_reports_docker_down():
    app = create_app(Settings(redis_url=NO_REDIS), dispatcher=RecordingDispatcher(),
                     docker_ping=lambda: False)
    assert app.test_client().get("/healthz").get_json()["docker"] is False


def test_store_outage_is_a_json_503(client):
    response = client.get("/v1/whoami", headers={"Authorization": "Bearer ak_whatever"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "store_unavailable"


# The OpenAPI document ------------------------------------------------------------------

@pytest.fixture
def document(client):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def test_every_flask_route_is_in_the_route_table(app):
    table = {(spec.method, spec.rule) for spec in ROUTES}
    for rule in app.url_map.iter_rules():
        # The console's pages are HTML for a signed-in browser, not API routes.
        if rule.endpoint == "static" or rule.rule.startswith(("/test/", "/console/")):
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, rule.rule) in table, f"{method} {rule.rule} bypasses @route"


def test_document_lists_every_route_of_the_table(document):
    assert document["openapi"].startswith("3.1")
    for spec in ROUTES:
        operation = document["paths"][openapi_path(spec.rule)][spec.method.lower()]
        assert operation["operationId"] == spec.name
        assert {str(status) for status in spec.responses} <= set(operation["responses"])
        assert ("bearerAuth" in str(operation["security"])) == spec.auth


def test_document_references_resolve(document):
    schemas = document["components"]["schemas"]
    refs = re.findall(r"'\$ref': '([^']+)'", str(document))
    assert refs
    for ref in refs:
        assert ref.startswith("#/components/schemas/")
        assert ref.rsplit("/", 1)[-1] in schemas, ref
    assert "$defs" not in str(document)


def test_document_describes_parameters_and_errors(document):
    create = document["paths"]["/v1/jobs"]["post"]
    assert {p["name"] for p in create["parameters"]} >= {"Prefer"}
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/JobCreate")
    assert create["responses"]["413"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ErrorBody")
    publish = document["paths"]["/v1/algorithms/{owner}/{name}/versions"]["post"]
    names = {(p["name"], p["in"]) for p in publish["parameters"]}
    assert names == {("owner", "path"), ("name", "path"), ("bump", "query"),
                     ("local_hash", "query"), ("git_commit", "query"), ("git_ref", "query")}
    assert "application/gzip" in publish["requestBody"]["content"]
    assert "415" in publish["responses"]
    job_input = document["components"]["schemas"]["JobCreate"]
    assert set(job_input["required"]) == {"algorithm", "input"}


def test_document_is_valid_openapi(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document)
