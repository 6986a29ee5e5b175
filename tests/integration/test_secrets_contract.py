"""One contract for both secret backends: the in-memory fake and Vault (a real OpenBao).

Every test runs against each; a fake that drifts from Vault fails here, not in a
unit test that trusted it.
"""

import contextlib
import itertools
import re
from types import SimpleNamespace

import pytest

from algohost.errors import InvalidRequest, SecretNotFound, SecretsForbidden, SecretsUnavailable
from algohost.manifest import Manifest
from algohost.secrets import MemorySecrets, VaultReader, VaultSecretSource, VaultSecretStore

pytestmark = pytest.mark.integration
ISO_MS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
_names = itertools.count(1)


class Backend:
    def __init__(self, store, reader, outage):
        self.store, self.reader, self.outage = store, reader, outage


@pytest.fixture(params=["real", "fake"])
def secrets(request):
    if request.param == "fake":
        fake = MemorySecrets()

        @contextlib.contextmanager
        def outage():
            fake.down = True
            try:
                yield
            finally:
                fake.down = False

        return Backend(fake, fake, outage)
    vault = request.getfixturevalue("vault")
    return Backend(VaultSecretStore.from_settings(vault.settings),
                   VaultReader.from_settings(vault.settings), vault.sealed)


@pytest.fixture
def algo():
    """An algorithm name no other test touched (the real server lives for the module)."""
    return f"algo-{next(_names)}"


def test_each_put_is_a_new_version_keeping_the_creation_time(secrets, algo):
    first = secrets.store.put("alice", algo, "DB_PASSWORD", "hunter2")
    second = secrets.store.put("alice", algo, "DB_PASSWORD", "hunter3")
    assert (first["version"], second["version"]) == (1, 2)
    assert first["name"] == second["name"] == "DB_PASSWORD"
    assert second["created_at"] == first["created_at"] <= second["updated_at"]
    assert all(re.fullmatch(ISO_MS, second[k]) for k in ("created_at", "updated_at"))


def test_list_is_sorted_metadata_of_one_algorithm_only(secrets, algo):
    secrets.store.put("alice", algo, "B_KEY", "value-of-b")
    secrets.store.put("alice", algo, "A_KEY", "value-of-a")
    secrets.store.put("alice", f"{algo}-other", "C_KEY", "value-of-c")
    listed = secrets.store.list("alice", algo)
    assert [m["name"] for m in listed] == ["A_KEY", "B_KEY"]
    assert all(set(m) == {"name", "version", "created_at", "updated_at"} for m in listed)
    assert "value-of" not in repr(listed)
    assert secrets.store.list("alice", f"{algo}-never") == []


def test_delete_says_whether_there_was_a_secret_and_removes_every_version(secrets, algo):
    secrets.store.put("alice", algo, "X", "1")
    secrets.store.put("alice", algo, "X", "2")
    assert secrets.store.delete("alice", algo, "X") is True
    assert secrets.store.delete("alice", algo, "X") is False
    assert secrets.store.list("alice", algo) == []
    with pytest.raises(SecretNotFound):
        secrets.reader.read("alice", algo, ["X"])


@pytest.mark.parametrize("value", ["", "ünïcödé ✓", "two\nlines", "x" * 10_000])
def test_any_text_value_reads_back_as_it_was_written(secrets, algo, value):
    secrets.store.put("alice", algo, "VALUE", value)
    assert secrets.reader.read("alice", algo, ["VALUE"])[0] == {"VALUE": value}


def test_the_version_tag_follows_values_not_the_order_of_names(secrets, algo):
    secrets.store.put("alice", algo, "A", "1")
    secrets.store.put("alice", algo, "B", "2")
    values, tag = secrets.reader.read("alice", algo, ["A", "B"])
    assert values == {"A": "1", "B": "2"} and re.fullmatch(r"[0-9a-f]{16}", tag)
    assert secrets.reader.read("alice", algo, ["B", "A"])[1] == tag
    secrets.store.put("alice", algo, "B", "3")
    values, rotated = secrets.reader.read("alice", algo, ["A", "B"])
    assert values == {"A": "1", "B": "3"} and rotated != tag


def test_a_secret_deleted_and_set_again_gets_a_new_tag(secrets, algo):
    secrets.store.put("alice", algo, "A", "1")
    _, before = secrets.reader.read("alice", algo, ["A"])
    secrets.store.delete("alice", algo, "A")
    again = secrets.store.put("alice", algo, "A", "1")  # the same value, version 1 again
    assert again["version"] == 1
    assert secrets.reader.read("alice", algo, ["A"])[1] != before


def test_a_missing_secret_is_named_and_no_value_is_shown(secrets, algo):
    secrets.store.put("alice", algo, "PRESENT", "p-value")
    with pytest.raises(SecretNotFound) as caught:
        secrets.reader.read("alice", algo, ["PRESENT", "ABSENT"])
    assert caught.value.details == {"secret": "ABSENT"} and "ABSENT" in caught.value.message
    assert "p-value" not in caught.value.message


def test_reading_an_algorithm_that_has_no_policy_is_forbidden(secrets, algo):
    with pytest.raises(SecretsForbidden):
        secrets.reader.read("mallory", algo, ["KEY"])


def test_a_policy_alone_lets_a_read_reach_the_missing_secret(secrets, algo):
    secrets.store.ensure_policy("alice", algo)
    with pytest.raises(SecretNotFound):
        secrets.reader.read("alice", algo, ["KEY"])


@pytest.mark.parametrize("bad", ["lower", "1DIGIT", "HAS-DASH", "", "A\n", "A" * 129])
def test_a_bad_secret_name_is_refused_before_anything_is_asked(secrets, algo, bad):
    with pytest.raises(InvalidRequest):
        secrets.store.put("alice", algo, bad, "v")
    with secrets.outage(), pytest.raises(InvalidRequest):
        secrets.reader.read("nobody", algo, [bad])  # no policy, no backend: still a 400


@pytest.mark.parametrize("owner, name", [("../x", "y"), ("a", "b/c"), ("A", "b"), ("a", "b\n")])
def test_an_owner_or_name_that_could_escape_its_path_is_refused(secrets, owner, name):
    for attempt in (lambda: secrets.store.put(owner, name, "X", "v"),
                    lambda: secrets.store.list(owner, name),
                    lambda: secrets.reader.read(owner, name, ["X"])):
        with pytest.raises(InvalidRequest):
            attempt()


def test_reading_no_names_asks_nothing_even_in_an_outage(secrets, algo):
    with secrets.outage():
        assert secrets.reader.read("alice", algo, []) == ({}, "")
        build = SimpleNamespace(owner="alice", name=algo,
                                manifest=Manifest(name=algo, entrypoint="main:apply"))
        assert VaultSecretSource(secrets.reader).for_build(build) == ({}, "")


def test_an_outage_is_secrets_unavailable_for_every_operation_then_recovers(secrets, algo):
    secrets.store.put("alice", algo, "KEY", "v")
    secrets.reader.read("alice", algo, ["KEY"])  # a cached token must not hide the outage
    with secrets.outage():
        for attempt in (lambda: secrets.store.put("alice", algo, "KEY", "w"),
                        lambda: secrets.store.list("alice", algo),
                        lambda: secrets.store.delete("alice", algo, "KEY"),
                        lambda: secrets.reader.read("alice", algo, ["KEY"])):
            with pytest.raises(SecretsUnavailable) as caught:
                attempt()
            assert caught.value.code == "secrets_unavailable" and caught.value.http_status == 503
    assert secrets.reader.read("alice", algo, ["KEY"])[0] == {"KEY": "v"}
