"""Retry timing: the configured schedule with ±20% jitter, Retry-After on 429/503, 410 stops."""

import pytest

from algohost.config import load_settings
from algohost.webhooks.schedule import MAX_DELAY_S, next_delay, parse_retry_after

SCHEDULE = (5.0, 30.0, 120.0)
NOW = 1_700_000_000.0


def delay(attempts, status=500, retry_after=None, rand=0.5):
    return next_delay(attempts, SCHEDULE, status, retry_after, rand=lambda: rand, now=lambda: NOW)


def test_each_failure_takes_the_next_delay_of_the_schedule():
    assert [delay(n) for n in (1, 2, 3)] == [5.0, 30.0, 120.0]


def test_jitter_stays_within_twenty_percent():
    assert delay(2, rand=0.0) == pytest.approx(24.0)
    assert delay(2, rand=1.0) == pytest.approx(36.0)


def test_no_retry_after_the_last_scheduled_one():
    assert delay(4) is None


def test_gone_stops_at_once():
    assert delay(1, status=410) is None


def test_retry_after_seconds_is_honoured_on_429_and_503_without_jitter():
    assert delay(1, status=429, retry_after="7", rand=1.0) == 7.0
    assert delay(1, status=503, retry_after="90") == 90.0


def test_retry_after_as_an_http_date():
    assert delay(1, status=503, retry_after="Tue, 14 Nov 2023 22:14:20 GMT") == \
        pytest.approx(1_700_000_060.0 - NOW)


def test_retry_after_is_ignored_on_other_statuses():
    assert delay(1, status=500, retry_after="600") == 5.0


def test_a_huge_retry_after_is_capped():
    assert delay(1, status=429, retry_after="999999") == MAX_DELAY_S


def test_retry_after_still_uses_up_an_attempt():
    assert delay(4, status=429, retry_after="1") is None


@pytest.mark.parametrize("value", [None, "", "soon", "-5"])
def test_unreadable_retry_after_is_none(value):
    assert parse_retry_after(value, NOW) is None


def test_a_network_failure_has_no_status_and_is_retried():
    assert delay(1, status=None) == 5.0


def test_schedule_setting_is_parsed_into_seconds():
    settings = load_settings({"ALGOHOST_WEBHOOK_SCHEDULE_S": "0.5, 1,1"})
    assert settings.webhook_schedule == (0.5, 1.0, 1.0)
    assert load_settings({}).webhook_schedule == (5, 30, 120, 600, 1800, 3600)


def test_a_bad_schedule_fails_at_load():
    with pytest.raises(ValueError, match="ALGOHOST_WEBHOOK_SCHEDULE_S"):
        load_settings({"ALGOHOST_WEBHOOK_SCHEDULE_S": "5,soon"})
    with pytest.raises(ValueError, match="negative"):
        load_settings({"ALGOHOST_WEBHOOK_SCHEDULE_S": "5,-1"})


def test_private_addresses_need_the_opt_in():
    assert load_settings({}).webhook_allow_private is False
    assert load_settings({"ALGOHOST_WEBHOOK_ALLOW_PRIVATE": "1"}).webhook_allow_private is True
