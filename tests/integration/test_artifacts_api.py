"""Artifacts over HTTP against a real Redis and a local blob directory: streamed both ways."""

import hashlib
import io
from urllib.parse import quote

import pytest
from gunicorn.http.wsgi import HEADER_VALUE_RE

from algohost.api import create_app
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.store.keys import KeyStore

pytestmark = pytest.mark.integration
MAX_UPLOAD = 1024  # far below the sizes streamed here: a streamed body has no such cap
MiB = 1024 * 1024


@pytest.fixture
def api(api_redis, api_redis_url, tmp_path):
    settings = Settings(redis_url=api_redis_url, state_dir=str(tmp_path),
                        max_upload_bytes=MAX_UPLOAD, artifact_quota_bytes=12 * MiB)
    client = create_app(settings, dispatcher=RecordingDispatcher(),
                        docker_ping=lambda: True).test_client()
    keys = KeyStore(api_redis)
    client.alice = {"Authorization": f"Bearer {keys.create('alice')}"}
    client.bob = {"Authorization": f"Bearer {keys.create('bob')}"}
    return client


def upload(api, data, headers, name="data.bin", media_type="application/octet-stream"):
    return api.post(f"/v1/artifacts?name={name}", input_stream=io.BytesIO(data),
                    headers={**headers, "Content-Type": media_type,
                             "Content-Length": str(len(data))})


def test_an_upload_streams_in_and_the_download_streams_the_same_bytes_back(api):
    data = bytes(range(256)) * 4096 * 7  # 7 MiB: over the app's cap for whole bodies
    response = upload(api, data, api.alice, "table.csv", "text/csv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert (body["size"], body["name"], body["media_type"]) == (len(data), "table.csv",
                                                                "text/csv")
    download = api.get(body["url"], headers=api.alice, buffered=False)
    assert download.status_code == 200 and download.is_streamed
    assert download.headers["Content-Length"] == str(len(data))
    assert download.headers["ETag"] == f'"sha256:{body["sha256"]}"'
    assert b"".join(download.response) == data


def test_a_hostile_name_downloads_with_a_header_any_server_can_send(api):
    name = "r\u00e9sum\u00e9\n\u2028\"x\\.txt"
    digest = upload(api, b"named", api.alice, quote(name, safe="")).get_json()["sha256"]
    download = api.get(f"/v1/artifacts/{digest}", headers=api.alice)
    assert download.status_code == 200
    disposition = download.headers["Content-Disposition"]
    # gunicorn refuses (500) any header value outside these bytes.
    assert HEADER_VALUE_RE.fullmatch(disposition)
    assert disposition == ('attachment; filename="r_sum____x_.txt"; '
                           f"filename*=UTF-8''{quote(name, safe='')}")


def test_the_same_content_twice_is_one_blob(api):
    first = upload(api, b"same bytes", api.alice).get_json()
    second = upload(api, b"same bytes", api.alice, name="again.bin").get_json()
    assert first["sha256"] == second["sha256"]
    info = api.get(f"/v1/artifacts/{first['sha256']}/info", headers=api.alice).get_json()
    assert info["name"] == "data.bin"


def test_another_owner_gets_404_for_an_artifact_it_does_not_hold(api):
    digest = upload(api, b"alice only", api.alice).get_json()["sha256"]
    for path in (f"/v1/artifacts/{digest}", f"/v1/artifacts/{digest}/info"):
        response = api.get(path, headers=api.bob)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "artifact_not_found"
    assert api.head(f"/v1/artifacts/{digest}", headers=api.bob).status_code == 404
    assert api.head(f"/v1/artifacts/{digest}", headers=api.alice).status_code == 200


def test_an_upload_past_the_quota_is_413_and_keeps_nothing(api):
    assert upload(api, b"a" * 7 * MiB, api.alice).status_code == 201
    response = upload(api, b"b" * 7 * MiB, api.alice)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "quota_exceeded"
    assert len(api.get("/v1/artifacts", headers=api.alice).get_json()["artifacts"]) == 1


def test_a_bad_digest_is_a_400_and_no_key_is_a_401(api):
    response = api.get("/v1/artifacts/not-a-digest", headers=api.alice)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert api.get("/v1/artifacts").status_code == 401


def test_the_listing_shows_the_owners_artifacts_newest_first(api):
    upload(api, b"one", api.alice, name="one")
    upload(api, b"two", api.alice, name="two")
    upload(api, b"three", api.bob, name="three")
    listed = api.get("/v1/artifacts", headers=api.alice).get_json()["artifacts"]
    assert [a["name"] for a in listed] == ["two", "one"]
