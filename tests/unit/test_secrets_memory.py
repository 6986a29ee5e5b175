"""The in-memory secret store and reader, and the worker's secret source on top of them."""

import pytest

from algohost.errors import InvalidRequest, SecretNotFound, SecretsForbidden, SecretsUnavailable
from algohost.secrets import MemorySecrets, VaultSecretSource
from algohost.secrets.layout import algorithm_policy, algorithm_policy_name, secret_path


class Clock:
    def __init__(self):
        self.n = 0

    def __call__(self):
        self.n += 1
        return f"2026-01-01T00:00:{self.n:02d}.000Z"


@pytest.fixture
def store():
    return MemorySecrets(clock=Clock())


def build(names, owner="alice", name="hello"):
    return {"id": "b_1", "owner": owner, "name": name,
            "manifest": {"secrets": {"names": names, "as_env": False}}}


def test_put_creates_version_one_then_counts_up_keeping_created_at(store):
    first = store.put("alice", "hello", "DB_PASSWORD", "a")
    second = store.put("alice", "hello", "DB_PASSWORD", "b")
    assert first["version"] == 1 and second["version"] == 2
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]


def test_list_shows_names_versions_and_times_but_never_values(store):
    store.put("alice", "hello", "B_KEY", "value-b")
    store.put("alice", "hello", "A_KEY", "value-a")
    store.put("alice", "other", "C_KEY", "value-c")
    listed = store.list("alice", "hello")
    assert [m["name"] for m in listed] == ["A_KEY", "B_KEY"]
    assert set(listed[0]) == {"name", "version", "created_at", "updated_at"}
    assert "value-" not in repr(listed)


def test_delete_reports_whether_there_was_a_secret(store):
    store.put("alice", "hello", "X", "1")
    assert store.delete("alice", "hello", "X") is True
    assert store.delete("alice", "hello", "X") is False
    assert store.list("alice", "hello") == []


@pytest.mark.parametrize("bad", ["lower", "1STARTS_WITH_DIGIT", "HAS-DASH", "", "A\n", "A" * 129])
def test_secret_names_are_env_var_style(store, bad):
    with pytest.raises(InvalidRequest):
        store.put("alice", "hello", bad, "v")


def test_a_missing_secret_is_named_in_the_error_and_the_value_is_not(store):
    store.put("alice", "hello", "PRESENT", "p-value")
    with pytest.raises(SecretNotFound) as caught:
        store.read("alice", "hello", ["PRESENT", "ABSENT"])
    assert "ABSENT" in caught.value.message and "p-value" not in caught.value.message
    assert caught.value.code == "secret_not_found"


def test_reading_without_a_policy_is_refused(store):
    with pytest.raises(SecretsForbidden):
        store.read("bob", "never-published", ["X"])


def test_version_tag_changes_when_any_value_changes_and_not_otherwise(store):
    store.put("alice", "hello", "A", "1")
    store.put("alice", "hello", "B", "2")
    _, tag1 = store.read("alice", "hello", ["A", "B"])
    _, tag2 = store.read("alice", "hello", ["B", "A"])
    store.put("alice", "hello", "B", "3")
    values, tag3 = store.read("alice", "hello", ["A", "B"])
    assert tag1 == tag2 != tag3
    assert values == {"A": "1", "B": "3"}


def test_version_tag_changes_when_a_secret_is_deleted_and_set_again(store):
    store.put("alice", "hello", "A", "1")
    _, before = store.read("alice", "hello", ["A"])
    store.delete("alice", "hello", "A")
    store.put("alice", "hello", "A", "other")
    _, after = store.read("alice", "hello", ["A"])
    assert before != after


def test_the_source_reads_nothing_for_a_build_without_secrets(store):
    store.down = True
    assert VaultSecretSource(store).for_build(build([])) == ({}, "")


def test_the_source_reads_the_manifest_names_of_the_build(store):
    store.put("alice", "hello", "TOKEN", "t")
    values, tag = VaultSecretSource(store).for_build(build(["TOKEN"]))
    assert values == {"TOKEN": "t"} and tag


def test_a_store_that_is_down_raises_secrets_unavailable(store):
    store.down = True
    for attempt in (lambda: store.put("alice", "hello", "X", "v"),
                    lambda: store.list("alice", "hello"),
                    lambda: store.read("alice", "hello", ["X"])):
        with pytest.raises(SecretsUnavailable) as caught:
            attempt()
        assert caught.value.code == "secrets_unavailable" and caught.value.http_status == 503


def test_policies_are_per_algorithm_and_unambiguous():
    assert algorithm_policy_name("a-b", "c") != algorithm_policy_name("a", "b-c")
    policy = algorithm_policy("secret", "alice", "hello")
    assert 'path "secret/data/algohost/alice/hello/*"' in policy
    assert '"read"' in policy and "list" not in policy and "metadata" not in policy
    assert secret_path("alice", "hello", "X") == "algohost/alice/hello/X"


@pytest.mark.parametrize("owner, name", [("../x", "y"), ("a", "b/c"), ("A", "b"), ("a", "b\n")])
def test_owner_and_name_cannot_escape_their_path(owner, name):
    with pytest.raises(InvalidRequest):
        secret_path(owner, name, "X")
