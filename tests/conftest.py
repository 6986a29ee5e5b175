"""Fixtures shared by every test: real services, reset before and after each test.

In CI (CI=true) a missing service fails the test with a message saying what is
missing; on a developer's machine it skips, as Dramatiq's suite does.
"""

import os

import pytest
import redis

TEST_REDIS_URL = os.environ.get("ALGOHOST_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


def require(part: str, error: Exception) -> None:
    message = f"{part} is missing: {error}. `make test` starts it; see README."
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(TEST_REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        require("Redis (127.0.0.1:6379)", exc)
    client.flushdb()
    yield client
    client.flushdb()


def _docker_ready():
    import docker

    from algohost.config import load_settings

    settings = load_settings({})
    try:
        client = docker.DockerClient(base_url=settings.sandbox.docker_url, timeout=5)
        client.ping()
    except Exception as exc:  # any failure means the engine is not usable
        require("the Docker engine (dockerd)", exc)
    try:
        client.images.get(settings.sandbox.base_image)
    except Exception as exc:
        require(f"the base image {settings.sandbox.base_image} (`algohost dev up` makes it)", exc)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real worker and API for the integration suite; images removed after."""
    from tests.stack import Stack

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.RedisError as exc:
        require("Redis (127.0.0.1:6379)", exc)
    _docker_ready()
    stack = Stack(tmp_path_factory.mktemp("stack"))
    stack.start_worker()
    yield stack
    stack.close()
