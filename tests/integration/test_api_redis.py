"""The HTTP API against a real Redis, with a recording dispatcher instead of Celery.

Publishing, versioning, submitting, waiting and cancelling, as a caller sees them;
no worker runs, so tests move builds and jobs along through the stores themselves.
"""

import threading

import pytest

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.store.jobs import JobStatus, JobStore
from algohost.store.keys import KeyStore
from algohost.store.registry import Registry
from tests.waiting import eventually

pytestmark = pytest.mark.integration
MAX_INPUT = 4096
GZIP = {"Content-Type": "application/gzip"}


class Api:
    def __init__(self, redis_client, redis_url):
        self.settings = Settings(redis_url=redis_url, max_input_bytes=MAX_INPUT,
                                 max_wait_s=5)
        self.dispatcher = RecordingDispatcher()
        self.client = create_app(self.settings, dispatcher=self.dispatcher,
                                 docker_ping=lambda: True).test_client()
        self.jobs = JobStore(redis_client, self.settings.job_retention_s)
        self.registry = Registry(redis_client)
        keys = KeyStore(redis_client)
        self.alice = {"Authorization": f"Bearer {keys.create('alice')}"}
        self.bob = {"Authorization": f"Bearer {keys.create('bob')}"}

    def publish(self, root, bump=None, headers=None, owner="alice", name="hello"):
        query = f"?bump={bump}" if bump else ""
        return self.client.post(f"/v1/algorithms/{owner}/{name}/versions{query}",
                                data=make_archive(root),
                                headers={**(headers or self.alice), **GZIP})

    def succeed(self, build):
        self.registry.update_build(build["id"], status="succeeded")

    def submit(self, payload, headers=None, **extra_headers):
        return self.client.post("/v1/jobs", json=payload,
                                headers={**(headers or self.alice), **extra_headers})


@pytest.fixture
def api(api_redis, api_redis_url):
    return Api(api_redis, api_redis_url)


def algorithm(root, name="hello", body="return {'echo': x}", extra=""):
    root.mkdir(parents=True, exist_ok=True)
    (root / "algorithm.toml").write_text(
        f'name = "{name}"\nentrypoint = "main:apply"\n{extra}')
    (root / "main.py").write_text(f"def apply(x):\n    {body}\n")
    return root


@pytest.fixture
def built(api, tmp_path):
    """alice/hello@0.1.0, built successfully."""
    build = api.publish(algorithm(tmp_path / "hello")).get_json()["build"]
    api.succeed(build)
    return build


def error_code(response):
    return response.get_json()["error"]["code"]


# Authentication ------------------------------------------------------------------------

def test_invalid_key_is_401(api):
    response = api.client.get("/v1/jobs", headers={"Authorization": "Bearer ak_nope"})
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_whoami_names_the_owner_of_the_key(api):
    assert api.client.get("/v1/whoami", headers=api.bob).get_json() == {"owner": "bob"}


def test_health_is_ok_when_redis_and_docker_answer(api):
    response = api.client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "redis": True, "docker": True}


# Publishing ----------------------------------------------------------------------------

def test_publish_queues_a_build_and_enqueues_it(api, tmp_path):
    response = api.publish(algorithm(tmp_path / "hello"))
    assert response.status_code == 202
    build = response.get_json()["build"]
    assert build["status"] == "queued" and build["version"] == "0.1.0"
    assert build["ref"] == "alice/hello@0.1.0"
    assert build["manifest"]["entrypoint"] == "main:apply"
    assert api.dispatcher.builds == [build["id"]]


def test_republishing_identical_content_returns_the_existing_build(api, tmp_path):
    root = algorithm(tmp_path / "hello")
    first = api.publish(root).get_json()["build"]
    again = api.publish(root)
    assert again.status_code == 200
    assert again.get_json()["build"]["id"] == first["id"]
    assert again.get_json()["build"]["version"] == "0.1.0"
    assert api.dispatcher.builds == [first["id"]]


def test_changed_content_gets_the_next_patch_version(api, tmp_path):
    root = algorithm(tmp_path / "hello")
    api.publish(root)
    algorithm(root, body="return x")
    response = api.publish(root)
    assert response.status_code == 202
    assert response.get_json()["build"]["version"] == "0.1.1"


def test_bump_minor_gets_the_next_minor_version(api, tmp_path):
    root = algorithm(tmp_path / "hello")
    api.publish(root)
    algorithm(root, body="return [x]")
    assert api.publish(root, bump="minor").get_json()["build"]["version"] == "0.2.0"


def test_unknown_bump_is_400(api, tmp_path):
    response = api.publish(algorithm(tmp_path / "hello"), bump="huge")
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert response.get_json()["error"]["details"]["errors"][0]["field"] == "bump"


def test_unknown_manifest_key_is_400_naming_the_key(api, tmp_path):
    response = api.publish(algorithm(tmp_path / "hello", extra="[resources]\nmemroy_mb = 5\n"))
    assert response.status_code == 400 and error_code(response) == "invalid_manifest"
    assert "resources.memroy_mb" in response.get_json()["error"]["message"]
    assert response.get_json()["error"]["details"]["key"] == "resources.memroy_mb"


def test_manifest_name_must_match_the_published_name(api, tmp_path):
    response = api.publish(algorithm(tmp_path / "other", name="other"))
    assert response.status_code == 400 and error_code(response) == "invalid_manifest"
    assert response.get_json()["error"]["details"]["key"] == "name"


def test_archive_without_manifest_is_400(api, tmp_path):
    root = algorithm(tmp_path / "hello")
    (root / "algorithm.toml").unlink()
    response = api.publish(root)
    assert error_code(response) == "invalid_manifest"
    assert "algorithm.toml not found" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("extra, key", [
    ('[build]\npython_packages = ["numpy\\nRUN curl evil"]\n', "build.python_packages"),
    ('[build]\nsystem_packages = ["gcc\\nRUN curl evil"]\n', "build.system_packages"),
    ('[build]\npython_packages = ["numpy\\u0000"]\n', "build.python_packages"),
])
def test_a_package_string_with_a_control_character_is_400_naming_it(api, tmp_path, extra, key):
    response = api.publish(algorithm(tmp_path / "hello", extra=extra))
    assert response.status_code == 400 and error_code(response) == "invalid_manifest"
    error = response.get_json()["error"]
    assert error["details"]["key"] == key and key in error["message"]
    assert api.dispatcher.builds == []


def test_missing_requirements_file_is_400(api, tmp_path):
    root = algorithm(tmp_path / "hello", extra='[build]\nrequirements = "requirements.txt"\n')
    response = api.publish(root)
    assert response.get_json()["error"]["details"]["key"] == "build.requirements"


def test_upload_that_is_not_a_tar_gz_is_400(api):
    response = api.client.post("/v1/algorithms/alice/hello/versions", data=b"hello",
                               headers={**api.alice, **GZIP})
    assert response.status_code == 400 and error_code(response) == "invalid_archive"


def test_upload_with_another_media_type_is_415(api, tmp_path):
    response = api.client.post("/v1/algorithms/alice/hello/versions",
                               data=make_archive(algorithm(tmp_path / "hello")),
                               headers={**api.alice, "Content-Type": "text/plain"})
    assert response.status_code == 415 and error_code(response) == "unsupported_media_type"


def test_publishing_as_another_owner_is_403(api, tmp_path):
    response = api.publish(algorithm(tmp_path / "hello"), headers=api.bob)
    assert response.status_code == 403 and error_code(response) == "forbidden"
    assert api.dispatcher.builds == []


def test_versions_are_listed_newest_first_and_read_with_logs(api, tmp_path, built):
    root = algorithm(tmp_path / "hello2", name="hello", body="return 2")
    api.publish(root)
    api.registry.append_log(built["id"], "step 1\n")
    versions = api.client.get("/v1/algorithms/alice/hello/versions", headers=api.alice)
    assert [b["version"] for b in versions.get_json()["versions"]] == ["0.1.1", "0.1.0"]
    one = api.client.get("/v1/algorithms/alice/hello/versions/0.1.0", headers=api.alice)
    assert one.get_json()["logs"] == "step 1\n" and one.get_json()["status"] == "succeeded"
    latest = api.client.get("/v1/algorithms/alice/hello/versions/latest", headers=api.alice)
    assert latest.get_json()["version"] == "0.1.0"


def test_versions_of_another_owners_private_algorithm_and_unknown_ones_are_404(api, built):
    other = api.client.get("/v1/algorithms/alice/hello/versions", headers=api.bob)
    assert other.status_code == 404 and error_code(other) == "algorithm_not_found"
    missing = api.client.get("/v1/algorithms/alice/nope/versions", headers=api.alice)
    assert missing.status_code == 404 and error_code(missing) == "algorithm_not_found"
    version = api.client.get("/v1/algorithms/alice/hello/versions/9.9.9", headers=api.alice)
    assert version.status_code == 404 and error_code(version) == "version_not_found"


def test_algorithms_list_shows_the_latest_successful_version(api, tmp_path, built):
    api.publish(algorithm(tmp_path / "hello2", body="return 3"))
    listing = api.client.get("/v1/algorithms", headers=api.alice).get_json()
    assert listing == {"algorithms": [{"owner": "alice", "name": "hello", "latest": "0.1.0",
                                       "versions": ["0.1.1", "0.1.0"],
                                       "visibility": "private", "description": "",
                                       "parameters": {}, "royalty_micros": 0}]}
    assert api.client.get("/v1/algorithms", headers=api.bob).get_json() == {"algorithms": []}


# Submitting ----------------------------------------------------------------------------

def test_job_before_any_successful_build_is_rejected_with_a_clear_code(api, tmp_path):
    api.publish(algorithm(tmp_path / "hello"))
    latest = api.submit({"algorithm": "alice/hello", "input": 1})
    assert latest.status_code == 404 and error_code(latest) == "version_not_found"
    exact = api.submit({"algorithm": "alice/hello@0.1.0", "input": 1})
    assert exact.status_code == 409 and error_code(exact) == "build_not_ready"
    unknown = api.submit({"algorithm": "alice/nope", "input": 1})
    assert unknown.status_code == 404 and error_code(unknown) == "algorithm_not_found"
    assert api.dispatcher.runs == []


def test_job_after_a_successful_build_is_queued_and_enqueued(api, built):
    response = api.submit({"algorithm": "alice/hello@latest", "input": {"x": 1}})
    assert response.status_code == 202
    job = response.get_json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["algorithm"] == "alice/hello@0.1.0"
    assert job["requested"] == "alice/hello@latest" and job["timeout_s"] == 30
    assert "input" not in job and "owner" not in job
    assert api.dispatcher.runs == [job["id"]]
    record = api.jobs.get(job["id"])
    assert record.build_id == built["id"] and record.input == {"x": 1}


def test_null_input_is_accepted_but_missing_input_is_not(api, built):
    assert api.submit({"algorithm": "alice/hello", "input": None}).status_code == 202
    response = api.submit({"algorithm": "alice/hello"})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["errors"] == [
        {"field": "input", "message": "this field is required"}]


def test_calling_another_owners_private_algorithm_is_404_as_for_a_missing_one(api, built):
    response = api.submit({"algorithm": "alice/hello", "input": 1}, headers=api.bob)
    assert response.status_code == 404 and error_code(response) == "algorithm_not_found"


@pytest.mark.parametrize("data, content_type", [
    (b"{not json", "application/json"), (b'{"algorithm": NaN}', "application/json"),
    (b'{"algorithm": "alice/hello", "input": 1}', "text/plain"), (b"", "application/json")])
def test_malformed_json_is_400(api, data, content_type):
    response = api.client.post("/v1/jobs", data=data,
                               headers={**api.alice, "Content-Type": content_type})
    assert response.status_code == 400 and error_code(response) == "malformed_json"


def test_invalid_fields_are_listed_without_validator_internals(api):
    response = api.submit({"algorithm": "Alice/../x", "input": 1, "timeout_s": "5",
                           "inputs": 2})
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    errors = response.get_json()["error"]["details"]["errors"]
    assert {e["field"] for e in errors} == {"algorithm", "timeout_s", "inputs"}
    text = response.get_data(as_text=True)
    assert "pydantic" not in text and "JobCreate" not in text and "errors.pydantic" not in text


@pytest.mark.parametrize("ref", ["alice/hello\n", "alice/hello@0.1.0\n", "alice/hello@1.2.x"])
def test_a_reference_with_a_trailing_newline_or_a_bad_version_is_400(api, built, ref):
    response = api.submit({"algorithm": ref, "input": 1})
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert api.dispatcher.runs == []


def test_a_body_that_is_not_an_object_is_400(api):
    response = api.submit([1, 2])
    assert response.get_json()["error"]["details"]["errors"] == [
        {"field": "body", "message": "must be a JSON object"}]


def test_timeout_above_the_server_maximum_is_400(api, built):
    response = api.submit({"algorithm": "alice/hello", "input": 1,
                           "timeout_s": api.settings.max_timeout_s + 1})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["errors"][0]["field"] == "timeout_s"


def test_input_nested_past_the_limit_is_400_and_never_stored(api, built):
    # Stored, it would make the job's page (with ?include=input) unrenderable: a 500.
    deep = 1
    for _ in range(300):
        deep = {"a": deep}
    response = api.submit({"algorithm": "alice/hello", "input": deep})
    assert response.status_code == 400 and error_code(response) == "invalid_request"
    assert api.dispatcher.runs == []


def test_input_over_the_limit_is_413(api, built):
    response = api.submit({"algorithm": "alice/hello", "input": "x" * MAX_INPUT})
    assert response.status_code == 413 and error_code(response) == "payload_too_large"


@pytest.mark.parametrize("prefer", ["wait=", "wait=1 2", "=5"])
def test_prefer_that_is_not_prefer_syntax_is_400(api, built, prefer):
    response = api.submit({"algorithm": "alice/hello", "input": 1}, Prefer=prefer)
    assert response.status_code == 400 and error_code(response) == "invalid_prefer"


def test_prefer_wait_over_the_maximum_waits_the_maximum(api, built):
    response = api.submit({"algorithm": "alice/hello", "input": 1}, Prefer="wait=6")
    assert response.status_code == 202
    assert response.headers["Preference-Applied"] == "wait=5"


def finish_soon(api):
    """Finish the job the API is about to wait for, once it has been enqueued."""
    def finish():
        job_id = eventually(lambda: api.dispatcher.runs, what="the job to be enqueued")[-1]
        api.jobs.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED})
        api.jobs.transition(job_id, JobStatus.SUCCEEDED, {JobStatus.RUNNING},
                            output={"echo": 1}, reason="succeeded",
                            metrics={"queue_ms": 1.0, "cold_start_ms": 0.0, "run_ms": 2.0,
                                     "total_ms": 3.0, "peak_memory_bytes": 10})

    thread = threading.Thread(target=finish)
    thread.start()
    return thread


def test_prefer_wait_answers_200_with_the_finished_job(api, built):
    thread = finish_soon(api)
    response = api.submit({"algorithm": "alice/hello", "input": 1}, Prefer="wait=5")
    thread.join()
    assert response.status_code == 200
    job = response.get_json()
    assert job["status"] == "succeeded" and job["output"] == {"echo": 1}
    assert job["metrics"]["run_ms"] == 2.0
    assert response.headers["Preference-Applied"] == "wait=5"


def test_prefer_wait_on_an_unfinished_job_answers_202_with_retry_after(api, built):
    response = api.submit({"algorithm": "alice/hello", "input": 1}, Prefer="wait=1")
    assert response.status_code == 202
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == "queued"


def test_enqueue_failure_fails_the_job_and_answers_503(api, built):
    def broken(job_id, priority=0):
        raise ConnectionError("broker down")

    api.dispatcher.enqueue_run = broken
    response = api.submit({"algorithm": "alice/hello", "input": 1})
    assert response.status_code == 503
    job_id = response.get_json()["error"]["details"]["job_id"]
    assert api.jobs.get(job_id).status == "failed"


# Reading and cancelling ----------------------------------------------------------------

def test_job_is_read_by_its_owner_only(api, built):
    job = api.submit({"algorithm": "alice/hello", "input": [1]}).get_json()
    mine = api.client.get(f"/v1/jobs/{job['id']}", headers=api.alice)
    assert mine.status_code == 200 and mine.get_json()["id"] == job["id"]
    theirs = api.client.get(f"/v1/jobs/{job['id']}", headers=api.bob)
    assert theirs.status_code == 403 and error_code(theirs) == "forbidden"
    missing = api.client.get("/v1/jobs/j_nope", headers=api.alice)
    assert missing.status_code == 404 and error_code(missing) == "job_not_found"


def test_input_is_shown_only_when_asked_for(api, built):
    job = api.submit({"algorithm": "alice/hello", "input": [1]}).get_json()
    plain = api.client.get(f"/v1/jobs/{job['id']}", headers=api.alice).get_json()
    assert "input" not in plain
    full = api.client.get(f"/v1/jobs/{job['id']}?include=input", headers=api.alice).get_json()
    assert full["input"] == [1]


def test_jobs_are_listed_newest_first_and_limited(api, built):
    ids = [api.submit({"algorithm": "alice/hello", "input": i}).get_json()["id"]
           for i in range(3)]
    page = api.client.get("/v1/jobs?limit=2", headers=api.alice).get_json()
    assert [job["id"] for job in page["jobs"]] == ids[::-1][:2]
    rest = api.client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}",
                          headers=api.alice).get_json()
    assert [job["id"] for job in rest["jobs"]] == ids[:1] and rest["next_cursor"] is None
    assert api.client.get("/v1/jobs", headers=api.bob).get_json() == {"jobs": [],
                                                                     "next_cursor": None}
    assert api.client.get("/v1/jobs?limit=0", headers=api.alice).status_code == 400
    assert api.client.get("/v1/jobs?limit=201", headers=api.alice).status_code == 400


def test_cancel_a_queued_job_then_again_is_409(api, built):
    job = api.submit({"algorithm": "alice/hello", "input": 1}).get_json()
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.alice)
    assert response.status_code == 200
    canceled = response.get_json()
    assert canceled["status"] == "canceled" and canceled["reason"] == "canceled"
    assert canceled["finished_at"]
    again = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.alice)
    assert again.status_code == 409 and error_code(again) == "job_not_cancelable"


def test_cancel_of_another_owners_job_is_403(api, built):
    job = api.submit({"algorithm": "alice/hello", "input": 1}).get_json()
    response = api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=api.bob)
    assert response.status_code == 403
    assert api.jobs.get(job["id"]).status == "queued"


# A submit's cached build lookup --------------------------------------------------------

def test_a_call_of_latest_right_after_a_new_version_runs_the_new_version(api, tmp_path):
    """The API process keeps @latest's pointer for a few seconds; the admission reads it
    again, so a call never runs a version that is no longer the latest."""
    root = algorithm(tmp_path / "hello")
    first = api.publish(root).get_json()["build"]
    api.registry.mark_succeeded(first["id"])
    job = api.submit({"algorithm": "alice/hello", "input": 1}).get_json()
    assert api.jobs.get(job["id"]).build_id == first["id"]
    algorithm(root, body="return x")
    second = api.publish(root).get_json()["build"]
    api.registry.mark_succeeded(second["id"])
    for ref in ("alice/hello", "alice/hello@latest"):
        job = api.submit({"algorithm": ref, "input": 1}).get_json()
        assert api.jobs.get(job["id"]).build_id == second["id"], ref
    api.registry.delete("alice", "hello", second["version"])
    job = api.submit({"algorithm": "alice/hello", "input": 1}).get_json()
    assert api.jobs.get(job["id"]).build_id == first["id"]


def test_a_moved_pointer_admits_nothing_and_counts_nothing(api, api_redis, tmp_path):
    from algohost.store.fairshare import FairShare, PointerMoved
    from algohost.store.limits import LimitStore
    from algohost.store.registry import Pointer

    build = api.publish(algorithm(tmp_path / "hello")).get_json()["build"]
    api.registry.mark_succeeded(build["id"])
    fair = FairShare(api_redis, LimitStore(api_redis, Settings()), lambda job_id: None,
                     JobStore.key(""))
    stale = Pointer("algohost:algo:alice/hello", "latest_build", "b_gone")
    with pytest.raises(PointerMoved):
        fair.admit("alice", "j_1", api.jobs.owner_index_key("alice"), pointer=stale)
    assert fair.usage("alice") == (0, 0) and api.jobs.get("j_1") is None
    current = Pointer("algohost:algo:alice/hello", "latest_build", build["id"])
    assert fair.admit("alice", "j_2", api.jobs.owner_index_key("alice"), pointer=current).sent
