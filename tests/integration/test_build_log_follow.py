"""Following a build's log when the build goes away under the stream, against a real Redis."""

import json

import pytest

from algohost.api.buildlogs import follow
from algohost.manifest import loads_manifest
from algohost.semver import Bump
from algohost.store.registry import Registry

pytestmark = pytest.mark.integration


def test_a_build_removed_while_followed_ends_the_stream_with_an_error_event(redis_client):
    registry = Registry(redis_client)
    manifest = loads_manifest('name = "gone"\nentrypoint = "main:apply"\n')
    build, _ = registry.publish("alice", "gone", "cd" * 32, manifest, b"", Bump.PATCH)
    redis_client.delete(registry._build(build.id))

    events = list(follow(registry, build, 0, limit_s=5))

    assert len(events) == 1 and events[0].startswith(b"event: error\n")
    data = events[0].decode().split("data: ", 1)[1].strip()
    assert json.loads(data)["code"] == "build_not_found"
