"""The Vault backend against a real OpenBao dev server that this module starts and stops.

What each token may do is asserted at the Vault level (hvac raising Forbidden), not
only through algohost's own classes: the policies are the protection. What the store
and the reader promise is held by test_secrets_contract.py, against the fake too.
"""


import hvac
import hvac.exceptions
import pytest

from algohost.dev.openbao import (
    API_TOKEN_FILE,
    WORKER_TOKEN_FILE,
    stop_dev_server,
)
from algohost.errors import SecretsUnavailable
from algohost.secrets import VaultReader, VaultSecretStore
from algohost.secrets.layout import algorithm_policy_name

pytestmark = pytest.mark.integration


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
