"""Fixtures for the integration suite: real services, reset before and after each test.

A missing service fails or skips the test as `tests.conftest.require` decides.
"""

import os

import pytest

from tests.conftest import answering_docker, flushed_redis

API_REDIS_URL = os.environ.get("ALGOHOST_TEST_API_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def api_redis_url():
    return API_REDIS_URL


@pytest.fixture
def api_redis():
    """A flushed Redis database for the API tests (db 15 unless overridden)."""
    yield from flushed_redis(API_REDIS_URL)


@pytest.fixture(scope="session")
def docker_client():
    """The engine the sandbox settings name, with the base image present."""
    from algohost.config import load_settings

    client = answering_docker(load_settings().sandbox)
    yield client
    client.close()
