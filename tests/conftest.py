"""Fixtures shared by every test: real services, reset before and after each test.

In CI (CI=true) a missing service fails the test with a message saying what is
missing; on a developer's machine it skips, as Dramatiq's suite does.
"""

import os
from collections.abc import Iterator

import pytest
import redis

TEST_REDIS_URL = os.environ.get("ALGOHOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def require(part: str, error: Exception) -> None:
    message = f"{part} is missing: {error}. `make test` starts it; see README."
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def answering_redis(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        require(f"Redis at {url}", exc)
    return client


def flushed_redis(url: str) -> Iterator[redis.Redis]:
    """For a fixture to `yield from`: the database at `url`, emptied before and after."""
    client = answering_redis(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client():
    yield from flushed_redis(TEST_REDIS_URL)


def answering_docker(sandbox):
    """A client of the engine `sandbox` (SandboxSettings) names, with its base image present."""
    import docker

    try:
        client = docker.DockerClient(base_url=sandbox.docker_url, timeout=10)
        client.ping()
    except Exception as exc:  # any failure means the engine is not usable
        require(f"the Docker engine at {sandbox.docker_url}", exc)
    try:
        client.images.get(sandbox.base_image)
    except Exception as exc:
        require(f"the base image {sandbox.base_image} (`algohost dev up` makes it)", exc)
    try:
        # Builds and networked calls need their networks; the rules must fence them.
        # Both are idempotent and touch only algohost's networks and chains.
        from algohost.sandbox.egress import ensure_networks, install_rules

        ensure_networks(client, sandbox)
        install_rules(sandbox)
    except Exception as exc:
        require("algohost's networks and egress rules (`algohost egress install`, as root)",
                exc)
    return client


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real worker and API for the integration suite; images removed after."""
    from algohost.config import load_settings
    from tests.stack import Stack

    answering_redis("redis://127.0.0.1:6379/0").close()
    answering_docker(load_settings({}).sandbox).close()  # the stack's settings: no env
    stack = Stack(tmp_path_factory.mktemp("stack"))
    stack.start_worker()
    yield stack
    stack.close()
