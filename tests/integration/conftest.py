"""Fixtures for the integration suite: real services, reset before and after each test.

In CI (CI=true) a missing service fails the test with a message naming it; on a
developer's machine the test is skipped instead.
"""

import os

import pytest
import redis

API_REDIS_URL = os.environ.get("ALGOHOST_TEST_API_REDIS_URL", "redis://127.0.0.1:6379/15")


def missing(part: str, error: Exception) -> None:
    message = f"{part} is missing: {error}. `make test` starts it; see README."
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def api_redis_url():
    return API_REDIS_URL


@pytest.fixture
def api_redis():
    """A flushed Redis database for the API tests (db 15 unless overridden)."""
    client = redis.Redis.from_url(API_REDIS_URL, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing(f"Redis at {API_REDIS_URL}", exc)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def docker_client():
    """The engine the sandbox settings name, with the base image present."""
    import docker

    from algohost.config import load_settings

    sandbox = load_settings().sandbox
    try:
        client = docker.DockerClient(base_url=sandbox.docker_url, timeout=10)
        client.ping()
    except Exception as exc:  # any failure means the engine is not usable
        missing(f"the Docker engine at {sandbox.docker_url}", exc)
    try:
        client.images.get(sandbox.base_image)
    except Exception as exc:
        missing(f"the base image {sandbox.base_image} (`algohost dev up` makes it)", exc)
    yield client
    client.close()
