import pytest

from algohost.errors import InvalidRequest
from algohost.semver import Bump, Version, newest, next_version


def test_first_version_is_0_1_0():
    assert next_version([], Bump.PATCH) == "0.1.0"


@pytest.mark.parametrize("part, expected", [
    (Bump.PATCH, "1.2.4"), (Bump.MINOR, "1.3.0"), (Bump.MAJOR, "2.0.0")])
def test_bump_from_the_newest_version(part, expected):
    assert next_version(["0.9.9", "1.2.3", "1.0.10"], part) == expected


def test_versions_order_numerically_not_lexically():
    assert newest(["0.1.9", "0.1.10", "0.1.2"]) == "0.1.10"
    assert Version.parse("0.10.0") > Version.parse("0.9.9")


@pytest.mark.parametrize("text", ["1.2", "01.2.3", "1.2.3-rc1", "v1.2.3", ""])
def test_malformed_versions_are_rejected(text):
    with pytest.raises(InvalidRequest):
        Version.parse(text)


def test_a_range_holds_the_versions_that_start_with_it():
    from algohost.semver import Range, Version, newest_in

    assert Version.parse("1.4.2") in Range.parse("1")
    assert Version.parse("1.4.2") in Range.parse("1.4")
    assert Version.parse("1.5.0") not in Range.parse("1.4")
    assert Version.parse("2.0.0") not in Range.parse("1")
    assert newest_in(["1.10.0", "1.9.3", "2.0.0", "1.2.0"], Range.parse("1")) == [
        "1.10.0", "1.9.3", "1.2.0"]


def test_a_range_that_is_not_major_or_major_minor_is_refused():
    import pytest

    from algohost.errors import InvalidRequest
    from algohost.semver import Range

    for text in ("1.2.3", "x", "01", ""):
        with pytest.raises(InvalidRequest):
            Range.parse(text)
