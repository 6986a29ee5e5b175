"""A build holds a lease while it builds: a builds worker killed mid-build leaves a lease
that expires, and the reaper gives the build back to the queue, or fails it past the limit,
instead of leaving it `building` forever."""

import time

import pytest
import redis

from algohost.archive import make_archive
from algohost.config import Settings
from algohost.manifest import loads_manifest
from algohost.semver import Bump
from algohost.store.build_leases import BuildLeases
from algohost.store.registry import Registry
from algohost.worker.building import BuildRunner, reap_expired_builds
from tests.conftest import TEST_REDIS_URL
from tests.stack import EXAMPLES

pytestmark = pytest.mark.integration
MAX_ATTEMPTS = 3


class FakeBuilder:
    """Builds nothing; notes whether the build held its lease while it ran."""

    def __init__(self, leases):
        self.leases, self.held = leases, []

    def build(self, build_id, tag, source_files, manifest, on_log, owner=None):
        self.held.append(self.leases.held(build_id))
        return "sha256:fake"


@pytest.fixture
def registry(redis_client):
    raw = redis.Redis.from_url(TEST_REDIS_URL)  # sources are bytes
    yield Registry(redis_client, raw)
    raw.close()


@pytest.fixture
def leases(redis_client):
    return BuildLeases(redis_client)


@pytest.fixture
def build(registry):
    manifest = loads_manifest((EXAMPLES / "hello" / "algorithm.toml").read_text())
    record, _ = registry.publish("alice", "hello", "hash1", manifest,
                                 make_archive(EXAMPLES / "hello"), Bump.PATCH)
    return record


def die_mid_build(leases, build_id):
    """What a killed worker leaves: the build claimed, its lease already past."""
    assert leases.claim(build_id, time.time() - 1, "2026-01-01T00:00:00.000Z")


def test_a_build_holds_its_lease_while_it_builds_and_gives_it_back(registry, leases, build):
    builder = FakeBuilder(leases)
    BuildRunner(registry, builder, Settings(), leases).run(build.id)
    assert builder.held[0] is not None and builder.held[0] > time.time()
    assert leases.held(build.id) is None
    assert registry.get_build(build.id).status == "succeeded"


def test_a_build_whose_worker_died_is_queued_again_and_then_built(registry, leases, build):
    die_mid_build(leases, build.id)
    enqueued = []
    assert reap_expired_builds(leases, enqueued.append, MAX_ATTEMPTS) == [build.id]
    assert enqueued == [build.id] and registry.get_build(build.id).status == "queued"
    BuildRunner(registry, FakeBuilder(leases), Settings(), leases).run(build.id)
    record = registry.get_build(build.id)
    assert record.status == "succeeded" and record.attempts == 2


def test_a_build_lost_too_often_fails_with_a_reason(registry, leases, build):
    enqueued = []
    for _ in range(MAX_ATTEMPTS):
        die_mid_build(leases, build.id)
        reap_expired_builds(leases, enqueued.append, MAX_ATTEMPTS)
    record = registry.get_build(build.id)
    assert record.status == "failed" and "worker building it was lost" in record.error
    assert len(enqueued) == MAX_ATTEMPTS - 1 and leases.held(build.id) is None


def test_a_live_lease_and_a_finished_build_are_left_alone(registry, leases, build):
    assert leases.claim(build.id, time.time() + 60, "2026-01-01T00:00:00.000Z")
    assert reap_expired_builds(leases, [].append, MAX_ATTEMPTS) == []
    registry.update_build(build.id, status="succeeded")
    assert leases.renew(build.id, time.time() - 1)  # a late worker's lease runs out
    assert reap_expired_builds(leases, [].append, MAX_ATTEMPTS) == []
    assert registry.get_build(build.id).status == "succeeded"


def test_a_redelivered_message_for_a_claimed_build_does_nothing(registry, leases, build):
    assert leases.claim(build.id, time.time() + 60, "2026-01-01T00:00:00.000Z")
    builder = FakeBuilder(leases)
    BuildRunner(registry, builder, Settings(), leases).run(build.id)
    assert builder.held == [] and registry.get_build(build.id).status == "building"
