"""The Prefer header: wait=N within bounds, respond-async, anything malformed refused."""

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


@pytest.mark.parametrize("header", [
    "wait=61", "wait=-1", "wait=1.5", "wait=abc", "wait=", "wait", "wait=1 2",
    "wait=1, wait=2", "respond-async=yes", "=5", "wait=9999999999", "wait=1 ; ; x y",
    'wait="5\n"', 'wait="5\\\n"',
])
def test_malformed_or_out_of_range_preferences_are_refused(header):
    with pytest.raises(InvalidPrefer):
        parse_prefer([header], max_wait_s=60)


def test_wait_named_in_two_headers_is_refused():
    with pytest.raises(InvalidPrefer):
        parse_prefer(["wait=1", "wait=2"], max_wait_s=60)
