import pytest

from algohost.config import load_settings


def test_defaults_without_environment():
    s = load_settings({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.broker == s.redis_url
    assert s.sandbox.base_image == "python:3.11-slim"
    assert s.job_retention_s == 7 * 24 * 3600


def test_prefixed_variables_are_typed():
    s = load_settings({"ALGOHOST_MAX_WAIT_S": "5", "ALGOHOST_POOL_IDLE_S": "1.5",
                       "ALGOHOST_BASE_IMAGE": "img:1", "ALGOHOST_BROKER_URL": "amqp://x"})
    assert s.max_wait_s == 5
    assert s.sandbox.pool_idle_s == 1.5
    assert s.sandbox.base_image == "img:1"
    assert s.broker == "amqp://x"


def test_bad_number_names_the_variable():
    with pytest.raises(ValueError, match="ALGOHOST_MAX_WAIT_S"):
        load_settings({"ALGOHOST_MAX_WAIT_S": "soon"})
