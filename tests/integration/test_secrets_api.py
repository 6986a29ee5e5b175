"""The secrets endpoints against a real Redis, with the in-memory secret store behind them.

Who may do what, what a listing shows, and how the API answers when the store is down;
the Vault backend itself is tested in test_vault.py.
"""

import pytest

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.secrets import MemorySecrets
from algohost.store.keys import KeyStore

pytestmark = pytest.mark.integration
MAX_SECRET = 64
BASE = "/v1/algorithms/alice/hello/secrets"


class Api:
    def __init__(self, redis_client, redis_url, tmp_path):
        self.store = MemorySecrets()
        settings = Settings(redis_url=redis_url, secret_max_bytes=MAX_SECRET)
        self.client = create_app(settings, dispatcher=RecordingDispatcher(),
                                 docker_ping=lambda: True, secrets=self.store).test_client()
        keys = KeyStore(redis_client)
        self.alice = {"Authorization": f"Bearer {keys.create('alice')}"}
        self.bob = {"Authorization": f"Bearer {keys.create('bob')}"}
        root = tmp_path / "hello"
        root.mkdir()
        (root / "algorithm.toml").write_text('name = "hello"\nentrypoint = "main:apply"\n')
        (root / "main.py").write_text("def apply(x):\n    return x\n")
        self.source = make_archive(root)

    def publish(self):
        response = self.client.post("/v1/algorithms/alice/hello/versions", data=self.source,
                                    headers={**self.alice, "Content-Type": "application/gzip"})
        assert response.status_code in (200, 202), response.get_json()

    def put(self, name, value, headers=None):
        return self.client.put(f"{BASE}/{name}", json={"value": value},
                               headers=headers or self.alice)


@pytest.fixture
def api(api_redis, api_redis_url, tmp_path):
    api = Api(api_redis, api_redis_url, tmp_path)
    api.publish()
    return api


def code(response):
    return response.get_json()["error"]["code"]


def test_publishing_creates_the_algorithms_read_policy(api):
    assert "algohost-algo-alice.hello" in api.store.policies


def test_set_returns_201_then_200_with_a_new_version_and_no_value(api):
    first = api.put("DB_PASSWORD", "hunter2")
    second = api.put("DB_PASSWORD", "hunter3")
    assert (first.status_code, second.status_code) == (201, 200)
    assert second.get_json()["version"] == 2
    assert "hunter" not in first.get_data(as_text=True) + second.get_data(as_text=True)


def test_a_text_plain_body_is_taken_as_is(api):
    response = api.client.put(f"{BASE}/RAW", data="line one\nline two\n",
                              headers={**api.alice, "Content-Type": "text/plain"})
    assert response.status_code == 201
    assert api.store.read("alice", "hello", ["RAW"])[0] == {"RAW": "line one\nline two\n"}


def test_listing_shows_names_versions_and_times_never_values(api):
    api.put("B_KEY", "value-of-b")
    api.put("A_KEY", "value-of-a")
    response = api.client.get(BASE, headers=api.alice)
    assert response.status_code == 200
    listed = response.get_json()["secrets"]
    assert [s["name"] for s in listed] == ["A_KEY", "B_KEY"]
    assert set(listed[0]) == {"name", "version", "created_at", "updated_at"}
    assert "value-of" not in response.get_data(as_text=True)


def test_delete_removes_a_secret_and_404s_when_absent(api):
    api.put("GONE", "x")
    assert api.client.delete(f"{BASE}/GONE", headers=api.alice).status_code == 200
    again = api.client.delete(f"{BASE}/GONE", headers=api.alice)
    assert again.status_code == 404 and code(again) == "secret_not_found"


def test_another_owner_can_neither_list_set_nor_delete(api):
    """A private algorithm is as missing to them as an unknown one; a public one is 403."""
    api.put("MINE", "alice-only")

    def attempts():
        return (api.client.get(BASE, headers=api.bob), api.put("MINE", "bob", api.bob),
                api.client.delete(f"{BASE}/MINE", headers=api.bob))

    for response in attempts():
        assert response.status_code == 404, response.get_json()
        assert code(response) == "algorithm_not_found"
    public = api.client.put("/v1/algorithms/alice/hello/visibility",
                            json={"visibility": "public"}, headers=api.alice)
    assert public.status_code == 200, public.get_json()
    for response in attempts():
        assert response.status_code == 403, response.get_json()
        assert code(response) == "forbidden"
    assert api.store.read("alice", "hello", ["MINE"])[0] == {"MINE": "alice-only"}


def test_without_a_key_every_endpoint_is_401(api):
    for response in (api.client.get(BASE), api.client.put(f"{BASE}/X", json={"value": "v"}),
                     api.client.delete(f"{BASE}/X")):
        assert response.status_code == 401


def test_an_unknown_algorithm_is_404(api):
    response = api.client.put("/v1/algorithms/alice/nope/secrets/X", json={"value": "v"},
                              headers=api.alice)
    assert response.status_code == 404 and code(response) == "algorithm_not_found"


@pytest.mark.parametrize("name", ["lower", "9LIVES", "WITH-DASH"])
def test_names_must_be_env_var_style(api, name):
    response = api.put(name, "v")
    assert response.status_code == 400 and code(response) == "invalid_request"


def test_a_value_over_the_limit_is_413_and_not_echoed(api):
    response = api.put("BIG", "s" * (MAX_SECRET + 1))
    assert response.status_code == 413 and code(response) == "payload_too_large"
    assert "sss" not in response.get_data(as_text=True)
    assert api.put("EXACT", "s" * MAX_SECRET).status_code == 201


@pytest.mark.parametrize("body", [{"value": 5}, {"value": "v", "x": 1}, ["v"], {"value": ""}])
def test_a_malformed_body_is_400(api, body):
    response = api.client.put(f"{BASE}/X", json=body, headers=api.alice)
    assert response.status_code == 400


def test_a_store_that_is_down_answers_503_secrets_unavailable(api):
    api.store.down = True
    for response in (api.client.get(BASE, headers=api.alice), api.put("X", "v"),
                     api.client.delete(f"{BASE}/X", headers=api.alice)):
        assert response.status_code == 503 and code(response) == "secrets_unavailable"


def test_publishing_while_the_store_is_down_still_succeeds(api):
    api.store.down = True
    api.store.policies.clear()
    api.publish()  # the same content again: the existing build comes back, 200
    api.store.down = False
    assert api.put("LATER", "v").status_code == 201
    assert "algohost-algo-alice.hello" in api.store.policies


def test_the_endpoints_are_in_the_openapi_document(api):
    paths = api.client.get("/v1/openapi.json").get_json()["paths"]
    assert set(paths["/v1/algorithms/{owner}/{name}/secrets/{secret}"]) == {"put", "delete"}
    assert set(paths["/v1/algorithms/{owner}/{name}/secrets"]) == {"get"}
