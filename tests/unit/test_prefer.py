"""The Prefer header (RFC 7240): wait=N up to the maximum, respond-async, what cannot be
honoured ignored, and only a header that is not Prefer syntax refused."""

import pytest

from algohost.api.prefer import parse_prefer
from algohost.errors import InvalidPrefer


@pytest.mark.parametrize("headers, wait", [
    ([], 0),
    (["wait=5"], 5),
    (["WAIT=5"], 5),
    (["wait = 7"], 7),
    (['wait="10"'], 10),
    (["wait=0"], 0),
    (["wait=60"], 60),
    (["respond-async"], 0),
    (["respond-async, wait=3"], 3),
    (["return=minimal", "wait=2"], 2),
    (["handling=lenient; foo=bar, wait=4"], 4),
    (["wait=4,"], 4),
])
def test_well_formed_preferences(headers, wait):
    assert parse_prefer(headers, max_wait_s=60) == wait


@pytest.mark.parametrize("header, wait", [
    ("wait=61", 60), ("wait=9999999999", 60), ("wait=-1", 0), ("wait=1.5", 0),
    ("wait=abc", 0), ("wait", 0), ("respond-async=yes", 0), ("wait=1, wait=2", 1),
])
def test_preferences_that_cannot_be_honoured_are_ignored_or_capped(header, wait):
    assert parse_prefer([header], max_wait_s=60) == wait


@pytest.mark.parametrize("header", ["wait=", "wait=1 2", "=5", "wait=1 ; ; x y", "wait=\"1",
                                    'wait="5\n"', 'wait="5\\\n"'])
def test_a_header_that_is_not_prefer_syntax_is_refused(header):
    with pytest.raises(InvalidPrefer):
        parse_prefer([header], max_wait_s=60)


def test_only_the_first_wait_counts_across_headers():
    assert parse_prefer(["wait=1", "wait=2"], max_wait_s=60) == 1
