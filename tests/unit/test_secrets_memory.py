"""The worker's secret source over the in-memory fake, and the policy texts.

What the fake shares with Vault is held by tests/integration/test_secrets_contract.py.
"""

import pytest

from algohost.manifest import Manifest, SecretsSection
from algohost.secrets import MemorySecrets, VaultSecretSource
from algohost.secrets.layout import algorithm_policy, algorithm_policy_name, secret_path
from algohost.store.registry import BuildRecord, BuildStatus


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
    return BuildRecord(id="b_1", owner=owner, name=name, version="0.1.0",
                       status=BuildStatus.SUCCEEDED,
                       manifest=Manifest(name=name, entrypoint="main:apply",
                                         secrets=SecretsSection(names=names)))


def test_the_source_reads_nothing_for_a_build_without_secrets(store):
    store.down = True
    assert VaultSecretSource(store).for_build(build([])) == ({}, "")


def test_the_source_reads_the_manifest_names_of_the_build(store):
    store.put("alice", "hello", "TOKEN", "t")
    values, tag = VaultSecretSource(store).for_build(build(["TOKEN"]))
    assert values == {"TOKEN": "t"} and tag


def test_policies_are_per_algorithm_and_unambiguous():
    assert algorithm_policy_name("a-b", "c") != algorithm_policy_name("a", "b-c")
    policy = algorithm_policy("secret", "alice", "hello")
    assert 'path "secret/data/algohost/alice/hello/*"' in policy
    assert '"read"' in policy and "list" not in policy and "metadata" not in policy
    assert secret_path("alice", "hello", "X") == "algohost/alice/hello/X"
