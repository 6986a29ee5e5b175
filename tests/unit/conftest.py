"""Fixtures of the unit suite: the real API for the command line's tests."""

import pytest


@pytest.fixture
def api(redis_client, tmp_path):
    """The API on a flushed Redis database, its worker in-process (tests/cli_api.py)."""
    from tests.cli_api import CliApi
    from tests.conftest import TEST_REDIS_URL

    return CliApi(redis_client, TEST_REDIS_URL, tmp_path / "state")
