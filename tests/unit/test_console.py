"""The web console over Flask's test client, on the real API with its inline worker: sign in,
CSRF, owner isolation, the editor's build and try-it, and what a page may never show."""

from __future__ import annotations

import gzip
import re

import pytest

from algohost.store.keys import KeyStore
from algohost.store.sessions import SessionStore


def token_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def sign_in(client, key: str):
    page = client.get("/console/signin")
    return client.post("/console/signin", data={"key": key,
                                                "csrf_token": token_in(page.text)})


@pytest.fixture
def console(api):
    client = api.app.test_client()
    assert sign_in(client, api.key).status_code == 302
    return client


def csrf_of(client) -> str:
    return token_in(client.get("/console/algorithms").text)


def publish_from_editor(client, api, name="hello", body='return {"hi": x}'):
    files = {"algorithm.toml": f'name = "{name}"\nentrypoint = "main:apply"\n',
             "main.py": f"def apply(x):\n    {body}\n"}
    return client.post(f"/console/algorithms/{api.owner}/{name}/build",
                       json={"files": files}, headers={"X-CSRF-Token": csrf_of(client)})


def test_pages_ask_to_sign_in_and_json_says_401(api):
    client = api.app.test_client()
    page = client.get("/console/jobs")
    assert page.status_code == 302 and "/console/signin" in page.headers["Location"]
    assert client.get("/console/jobs.json").status_code == 401


def test_signing_in_sets_only_an_httponly_strict_session_id(api):
    client = api.app.test_client()
    reply = sign_in(client, api.key)
    cookie = next(h for h in reply.headers.getlist("Set-Cookie")
                  if h.startswith("algohost_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert api.key not in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    stored = SessionStore(api.worker.registry.redis, 60).get(session_id)
    assert stored is not None and stored.owner == api.owner
    assert api.key not in stored.to_json()


def test_a_wrong_key_is_refused_with_401(api):
    client = api.app.test_client()
    reply = sign_in(client, "ak_not-a-key")
    assert reply.status_code == 401 and "not valid" in reply.text


def test_sign_in_without_its_csrf_token_is_refused(api):
    client = api.app.test_client()
    client.get("/console/signin")
    reply = client.post("/console/signin", data={"key": api.key})
    assert reply.status_code == 403 and "csrf_refused" in reply.text


def test_a_form_without_the_session_csrf_token_is_refused(console):
    assert console.post("/console/signout").status_code == 403
    assert console.post("/console/signout", data={"csrf_token": "forged"}).status_code == 403
    assert console.get("/console/jobs").status_code == 200  # still signed in


def test_sign_out_ends_the_session(console):
    reply = console.post("/console/signout", data={"csrf_token": csrf_of(console)})
    assert reply.status_code == 302
    assert console.get("/console/jobs.json").status_code == 401


def test_a_revoked_key_ends_its_sessions(api, console):
    # Through the app's own key store: another process's revocation takes its cache's 5 s.
    api.app.extensions["algohost"].keys.revoke(api.key)
    assert console.get("/console/jobs.json").status_code == 401


def test_build_from_the_editor_then_try_it(api, console):
    reply = publish_from_editor(console, api)
    assert reply.status_code == 202, reply.get_json()
    build = reply.get_json()["build"]
    log = console.get(build["log_url"]).get_json()
    assert log["status"] == "succeeded"
    events = console.get(build["events_url"])
    assert events.mimetype == "text/event-stream"
    assert 'event: end\ndata: {"status": "succeeded"' in events.text
    called = console.post("/console/try", json={"algorithm": f"{api.owner}/hello@latest",
                                                "input": 7},
                          headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    assert called.status_code == 200, called.get_json()
    assert called.get_json()["job"]["output"] == {"hi": 7}
    assert api.owner + "/hello" in console.get("/console/algorithms").text
    editor = console.get(f"/console/algorithms/{api.owner}/hello/edit")
    assert editor.status_code == 200 and "def apply(x)" in editor.text


def test_try_it_validates_with_the_api_rules(api, console):
    reply = console.post("/console/try", json={"algorithm": "not a ref", "input": 1},
                         headers={"X-CSRF-Token": csrf_of(console)})
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == "invalid_request"


def test_a_failing_job_shows_its_traceback(api, console):
    publish_from_editor(console, api, "boom", 'raise ValueError("no good")')
    called = console.post("/console/try", json={"algorithm": f"{api.owner}/boom", "input": 1},
                          headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    job = called.get_json()["job"]
    assert job["status"] == "failed"
    page = console.get(f"/console/jobs/{job['id']}")
    assert "ValueError" in page.text and "Traceback" in page.text


def test_another_owners_job_and_algorithm_are_refused(api, console, redis_client):
    other = api.app.test_client()
    sign_in(other, KeyStore(redis_client).create("mallory"))
    publish_from_editor(console, api)
    called = console.post("/console/try", json={"algorithm": f"{api.owner}/hello", "input": 1},
                          headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    job_id = called.get_json()["job"]["id"]
    assert other.get(f"/console/jobs/{job_id}").status_code == 403
    assert other.get(f"/console/jobs/{job_id}/status.json").status_code == 403
    assert job_id not in other.get("/console/jobs.json").text
    # A private algorithm is, to another owner, as missing as one never published.
    assert other.get(f"/console/algorithms/{api.owner}/hello").status_code == 404
    assert other.get(f"/console/algorithms/{api.owner}/hello/edit").status_code == 403
    denied = publish_from_editor(other, api)
    assert denied.status_code == 403


def test_pages_forbid_inline_script_and_are_not_cached(console):
    page = console.get("/console/jobs")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"


def test_a_secret_is_set_listed_and_deleted_and_its_value_never_comes_back(api, console):
    publish_from_editor(console, api)
    page = f"/console/algorithms/{api.owner}/hello/secrets"
    value = "s3cr3t-value-that-must-not-show"
    answers = [console.post(page, data={"name": "DB_PASSWORD", "value": value,
                                        "csrf_token": csrf_of(console)},
                            follow_redirects=True)]
    assert answers[0].status_code == 200 and "DB_PASSWORD is set (version 1)" in answers[0].text
    answers.append(console.get(page))
    assert "DB_PASSWORD" in answers[-1].text
    answers.append(console.post(f"{page}/DB_PASSWORD/delete",
                                data={"csrf_token": csrf_of(console)}, follow_redirects=True))
    assert "DB_PASSWORD is deleted" in answers[-1].text
    assert not any(value in reply.text for reply in answers)
    assert not any(value in location for reply in answers
                   for location in reply.request.url.split("?"))


def test_a_secret_without_the_csrf_token_is_not_set(api, console):
    publish_from_editor(console, api)
    page = f"/console/algorithms/{api.owner}/hello/secrets"
    assert console.post(page, data={"name": "X", "value": "v"}).status_code == 403
    assert "<code>X</code>" not in console.get(page).text


def test_another_owners_secrets_page_is_refused(api, console, redis_client):
    publish_from_editor(console, api)
    other = api.app.test_client()
    sign_in(other, KeyStore(redis_client).create("mallory"))
    # Private: to another owner it does not exist (a public one would be 403).
    assert other.get(f"/console/algorithms/{api.owner}/hello/secrets").status_code == 404


def test_a_collection_is_made_uploaded_to_listed_and_downloaded(api, console):
    made = console.post("/console/data", data={"name": "inputs", "access": "private",
                                               "csrf_token": csrf_of(console)})
    assert made.status_code == 303
    url = f"/console/data/{api.owner}/inputs"
    put = console.put(f"{url}/files/a/b.csv", data=b"x,y\n1,2\n",
                      headers={"Content-Type": "text/csv", "X-CSRF-Token": csrf_of(console)})
    assert put.status_code == 201, put.get_json()
    assert "a/b.csv" in console.get(url).text
    assert "a/b.csv" in console.get(f"{url}?prefix=a/").text
    assert "a/b.csv" not in console.get(f"{url}?prefix=z/").text
    got = console.get(f"{url}/files/a/b.csv")
    assert got.data == b"x,y\n1,2\n" and got.headers["Content-Disposition"].startswith("attachment")
    assert console.put(f"{url}/files/c.csv", data=b"1").status_code == 403


def test_a_collection_with_an_unknown_access_rule_is_a_400(console):
    reply = console.post("/console/data", data={"name": "x", "access": "everyone",
                                                "csrf_token": csrf_of(console)})
    assert reply.status_code == 400 and "invalid_request" in reply.text


def test_a_pipeline_is_drawn_and_a_run_started_from_its_page(api, console):
    publish_from_editor(console, api, "prep")
    publish_from_editor(console, api, "train")
    spec = {"steps": {"prep": {"algorithm": f"{api.owner}/prep", "input": "$input"},
                      "train": {"algorithm": f"{api.owner}/train",
                                "input": "$steps.prep.output"}},
            "output": "$steps.train.output"}
    made = api.app.test_client().post(f"/v1/pipelines/{api.owner}/flow", json=spec,
                                      headers={"Authorization": f"Bearer {api.key}"})
    assert made.status_code == 201, made.get_json()
    page = console.get("/console/pipelines")
    assert page.status_code == 200 and 'data-step="train"' in page.text
    started = console.post(f"/console/pipelines/{api.owner}/flow/runs",
                           data={"input": "3", "csrf_token": csrf_of(console)})
    assert started.status_code == 303, started.text
    run = console.get(started.headers["Location"])
    assert run.status_code == 200 and "<svg" in run.text and 'data-step="prep"' in run.text
    run_id = started.headers["Location"].rsplit("/", 1)[1]
    assert run_id in console.get("/console/pipelines").text


def test_a_pipeline_run_input_that_is_not_json_is_a_400(api, console):
    reply = console.post(f"/console/pipelines/{api.owner}/flow/runs",
                         data={"input": "{nope", "csrf_token": csrf_of(console)})
    assert reply.status_code == 400 and "invalid_request" in reply.text


def test_batches_are_listed_with_their_progress(api, console):
    publish_from_editor(console, api)
    client, auth = api.app.test_client(), {"Authorization": f"Bearer {api.key}"}
    made = client.post("/v1/batches", json={"algorithm": f"{api.owner}/hello",
                                            "inputs": [1, 2, 3]}, headers=auth)
    assert made.status_code == 202, made.get_json()
    batch_id = made.get_json()["id"]
    assert [b["id"] for b in client.get("/v1/batches", headers=auth).get_json()["batches"]] \
        == [batch_id]
    page = console.get("/console/batches")
    assert batch_id in page.text and "<progress" in page.text
    row = console.get("/console/batches.json").get_json()["batches"][0]
    assert row["total"] == 3 and row["finished"] == 3
    one = console.get(f"/console/batches/{batch_id}")
    assert one.status_code == 200 and '{"hi": 2}' in one.text
    assert console.get(f"/console/batches/{batch_id}?cursor=x").status_code == 400


def test_another_owners_batches_are_not_listed(api, console, redis_client):
    publish_from_editor(console, api)
    api.app.test_client().post("/v1/batches", json={"algorithm": f"{api.owner}/hello",
                                                    "inputs": [1]},
                               headers={"Authorization": f"Bearer {api.key}"})
    other = api.app.test_client()
    sign_in(other, KeyStore(redis_client).create("mallory"))
    assert other.get("/console/batches.json").get_json() == {"batches": []}


def test_metrics_are_drawn_per_build_and_compared(api, console):
    publish_from_editor(console, api)
    publish_from_editor(console, api, body='return {"hi": x, "v": 2}')
    for version in ("0.1.0", "0.1.1"):
        for value in range(3):
            console.post("/console/try", json={"algorithm": f"{api.owner}/hello@{version}",
                                               "input": value},
                         headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    page = console.get(f"/console/algorithms/{api.owner}/hello/metrics")
    assert page.status_code == 200
    assert page.text.count("<svg") >= 4  # two compare charts, two per build over time
    assert "total_ms percentiles by build" in page.text and "0.1.0" in page.text
    picked = console.get(f"/console/algorithms/{api.owner}/hello/metrics?version=0.1.0"
                         "&since=24h")
    assert picked.status_code == 200 and "0.1.1</a>" not in picked.text


def test_metrics_of_another_owners_algorithm_are_refused(api, console, redis_client):
    publish_from_editor(console, api)
    other = api.app.test_client()
    sign_in(other, KeyStore(redis_client).create("mallory"))
    # Private: to another owner it does not exist.
    assert other.get(f"/console/algorithms/{api.owner}/hello/metrics").status_code == 404


def test_a_bad_since_is_a_400(api, console):
    publish_from_editor(console, api)
    reply = console.get(f"/console/algorithms/{api.owner}/hello/metrics?since=yesterday")
    assert reply.status_code == 400 and "invalid_request" in reply.text


def test_usage_per_day_is_drawn(api, console):
    publish_from_editor(console, api)
    console.post("/console/try", json={"algorithm": f"{api.owner}/hello", "input": 1},
                 headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    page = console.get("/console/usage")
    assert page.status_code == 200 and "calls per day" in page.text and "<svg" in page.text
    assert console.get("/console/usage?role=thief").status_code == 400


def test_scripts_are_sent_gzipped_with_a_long_cache_life(api, console):
    page = console.get(f"/console/algorithms/{api.owner}/fresh/edit")  # names the bundle
    src = re.search(r'src="(/console/static/editor\.js\?v=[0-9a-f]+)"', page.text).group(1)
    plain = console.get(src)
    zipped = console.get(src, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert len(zipped.data) < len(plain.data) / 2
    assert "max-age=604800" in zipped.headers["Cache-Control"]
    assert gzip.decompress(zipped.data) == plain.data
    assert console.get(src, headers={"Accept-Encoding": "gzip",
                                     "If-None-Match": zipped.headers["ETag"]}).status_code == 304


def test_a_public_algorithm_is_listed_to_others_who_cannot_change_or_edit_it(api, console,
                                                                             redis_client):
    publish_from_editor(console, api)
    page = f"/console/algorithms/{api.owner}/hello"
    made = console.post(f"{page}/visibility", data={"visibility": "public",
                                                    "csrf_token": csrf_of(console)})
    assert made.status_code == 303
    assert "Make it private" in console.get(page).text
    other = api.app.test_client()
    sign_in(other, KeyStore(redis_client).create("mallory"))
    listing = other.get("/console/algorithms").text
    assert f"{api.owner}/hello" in listing.split("Public, by other owners")[1]
    seen = other.get(page)
    assert seen.status_code == 200 and "Edit and try" not in seen.text
    assert "Make it" not in seen.text
    refused = other.post(f"{page}/visibility", data={"visibility": "private",
                                                     "csrf_token": csrf_of(other)})
    assert refused.status_code == 403
    assert other.get(f"{page}/edit").status_code == 403
    assert "hello" not in other.get("/console/algorithms?q=nomatch").text.split("Public")[1]


def test_visibility_takes_only_its_two_values(api, console):
    publish_from_editor(console, api)
    reply = console.post(f"/console/algorithms/{api.owner}/hello/visibility",
                         data={"visibility": "everyone", "csrf_token": csrf_of(console)})
    assert reply.status_code == 400


def test_a_job_links_the_job_that_called_it_and_the_calls_it_made(api, console):
    from algohost.store.jobs import JobRecord, JobStatus, JobStore

    store = JobStore(api.worker.registry.redis, 3600)
    for job_id, parent, children in (("j_parent", None, ["j_child"]),
                                     ("j_child", "j_parent", [])):
        store.create(JobRecord(id=job_id, owner=api.owner, status=JobStatus.SUCCEEDED,
                               algorithm=f"{api.owner}/hello@0.1.0", parent_job=parent,
                               children=children, depth=1 if parent else 0))
    assert 'href="/console/jobs/j_child"' in console.get("/console/jobs/j_parent").text
    assert 'href="/console/jobs/j_parent"' in console.get("/console/jobs/j_child").text


def test_a_queued_job_is_canceled_from_its_page(api, console):
    publish_from_editor(console, api)
    api.worker.hold = True
    called = console.post("/console/try", json={"algorithm": f"{api.owner}/hello", "input": 1},
                          headers={"X-CSRF-Token": csrf_of(console)})
    job_id = called.get_json()["job"]["id"]
    page = console.get(f"/console/jobs/{job_id}")
    assert "Cancel the job" in page.text
    assert console.post(f"/console/jobs/{job_id}/cancel").status_code == 403  # no token
    canceled = console.post(f"/console/jobs/{job_id}/cancel",
                            data={"csrf_token": token_in(page.text)}, follow_redirects=True)
    assert canceled.status_code == 200 and 'class="status canceled"' in canceled.text
    assert "Cancel the job" not in canceled.text


def test_the_models_page_lists_an_owners_models(console):
    page = console.get("/console/models")
    assert page.status_code == 200 and "No models yet." in page.text



def test_an_installed_package_carries_the_consoles_templates_and_assets():
    """`pip install .` (the Dockerfile's) ships only the files package-data names."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["algohost"]
    console = root / "algohost" / "console"
    files = [p.relative_to(root / "algohost").as_posix()
             for folder in ("templates", "static") for p in (console / folder).rglob("*")
             if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pattern) for pattern in patterns)
                         for f in files)


def test_a_version_is_yanked_unyanked_and_deleted_from_the_algorithm_page(api, console):
    publish_from_editor(console, api)
    base = f"/console/algorithms/{api.owner}/hello"
    token = {"csrf_token": csrf_of(console)}
    assert console.post(f"{base}/versions/0.1.0/yank", data=token).status_code == 303
    assert "yanked" in console.get(base).text and "Unyank" in console.get(base).text
    assert console.post(f"{base}/versions/0.1.0/unyank", data=token).status_code == 303
    assert console.post(f"{base}/versions/0.1.0/delete", data=token).status_code == 303
    assert 'class="status deleted"' in console.get(base).text
    assert console.post(f"{base}/versions/0.1.0/explode", data=token).status_code == 404
    assert console.post(f"{base}/versions/0.1.0/yank").status_code == 403  # no token


def test_sending_a_webhook_again_goes_through_the_api(api, console):
    publish_from_editor(console, api)
    called = console.post("/console/try", json={"algorithm": f"{api.owner}/hello", "input": 1},
                          headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"})
    job_id = called.get_json()["job"]["id"]
    reply = console.post(f"/console/jobs/{job_id}/redeliver", data={"csrf_token": csrf_of(console)})
    assert reply.status_code == 404 and "delivery_not_found" in reply.text


def test_try_it_starts_from_a_notebooks_parameter_defaults():
    from algohost.console.editor import example_input
    from algohost.public import Build

    fields = {"id": "b_1", "owner": "a", "name": "n", "version": "0.1.0", "ref": "a/n@0.1.0",
              "content_hash": "h", "image": "i", "status": "succeeded", "created_at": "",
              "started_at": None, "finished_at": None, "manifest": {}, "error": None}
    notebook = Build.model_validate({**fields, "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "default": 50},
                                         "noise": {"default": 0.5}}}})
    assert example_input(notebook) == {"n": 50, "noise": 0.5}
    assert example_input(Build.model_validate(fields)) == {"name": "world"}
    assert example_input(None) == {"name": "world"}


def test_a_version_page_follows_the_log_only_while_the_build_runs(api, console):
    api.worker.hold = True
    reply = publish_from_editor(console, api)
    page = console.get(reply.get_json()["build"]["url"])
    assert 'data-live="yes"' in page.text and 'class="status queued"' in page.text
    api.worker.release()
    assert 'data-live="no"' in console.get(reply.get_json()["build"]["url"]).text


def test_older_jobs_are_a_page_away_and_not_live(api, console, monkeypatch):
    from algohost.console import pages

    monkeypatch.setattr(pages, "JOBS_SCANNED", 2)
    publish_from_editor(console, api)
    ids = [console.post("/console/try", json={"algorithm": f"{api.owner}/hello", "input": n},
                        headers={"X-CSRF-Token": csrf_of(console), "Prefer": "wait=5"}
                        ).get_json()["job"]["id"] for n in range(3)]
    newest = console.get("/console/jobs")
    assert ids[2] in newest.text and ids[0] not in newest.text and "data-live-jobs" in newest.text
    older = re.search(r'href="([^"]+cursor=[^"]+)">Older jobs', newest.text).group(1)
    page = console.get(older.replace("&amp;", "&"))
    assert ids[0] in page.text and "data-live-jobs" not in page.text
    assert console.get("/console/jobs?cursor=x").status_code == 400
