"""Every grammar in names.py: good values pass whole; newlines, control characters,
empty and over-long values never do; AlgorithmRef parses and prints the same reference."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from algohost.errors import InvalidManifest, InvalidRequest
from algohost.names import (
    ALGORITHM_NAME,
    APT_PACKAGE,
    COLLECTION,
    DATA_PATH,
    DATA_PATH_PATTERN,
    ENTRYPOINT,
    MODEL_KEY,
    MODEL_NAME,
    MODEL_REF,
    OWNER,
    PIP_REQUIREMENT,
    SECRET_NAME,
    SHA256,
    VERSION,
    VERSION_RANGE,
    AlgorithmRef,
    DataUri,
    Grammar,
)

GOOD = {
    OWNER: ["alice", "a", "team-7_x", "0ops", "a" * 63],
    ALGORITHM_NAME: ["hello", "pg_version", "x-1", "b" * 63],
    VERSION: ["0.1.0", "1.2.3", "10.20.30", "999999999.0.0"],
    VERSION_RANGE: ["1", "0", "1.2", "12.0"],
    SECRET_NAME: ["DB_PASSWORD", "_X", "A" * 128],
    APT_PACKAGE: ["libpq-dev", "gcc", "g++", "libc6=2.36-9+deb12u4", "python3.11"],
    PIP_REQUIREMENT: ["numpy==2.1.*", "requests[security]>=2.8.1,==2.8.*",
                      'pywin32; sys_platform == "win32"',
                      "pip @ https://example.com/pip-1.3.1.zip#sha1=da9234ee",
                      "git+https://example.com/repo.git"],
    ENTRYPOINT: ["main:apply", "pkg.sub.mod:run_2", "_m:_f", "analysis.ipynb",
                 "notebooks/fit-2.ipynb"],
    SHA256: ["0" * 64, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"],
    MODEL_NAME: ["resnet", "bert.base-v2", "m_1"],
    MODEL_REF: ["resnet@latest", "bert.base@sha256:" + "a" * 64],
    MODEL_KEY: ["weights", "Model_1.bin", ".hidden"],
    COLLECTION: ["images", "set.v2", "a-b_c"],
    DATA_PATH: ["a.csv", "dir/sub/file=1+2@x.bin", ".hidden/x", "..."],
}

BAD = {
    OWNER: ["Alice", "-a", "_a", "a/b", "a b", "a.b", "a" * 64],
    ALGORITHM_NAME: ["Hello", "-x", "x@1", "x.y", "b" * 64],
    VERSION: ["1.2", "01.2.3", "1.2.3-rc1", "v1.2.3", "1.2.3.4", "1234567890.0.0",
              "\u0661.2.3"],
    VERSION_RANGE: ["1.2.3", "01", "x", "1.", "latest"],
    SECRET_NAME: ["lower", "1ABC", "A-B", "A" * 129],
    APT_PACKAGE: ["y && reboot", "x", "Libpq", "-f", "a=b c", "a" * 257],
    PIP_REQUIREMENT: ["--index-url=http://x", "-e .", " numpy", "./local", "numpy\u00e9",
                      "n" * 1025],
    ENTRYPOINT: ["main", "main:", ":f", "main:apply; rm", "../x:apply", "m:f.g",
                 "../a.ipynb", "/a.ipynb", ".hidden.ipynb", "a/../b.ipynb", "a.ipynb\n",
                 "m\u00e9:f", "m:" + "f" * 254],
    SHA256: ["A" * 64, "0" * 63, "0" * 65, "g" * 64],
    MODEL_NAME: ["Resnet", ".x", "a/b", "m" * 64],
    MODEL_REF: ["resnet", "resnet@1.0.0", "resnet@sha256:" + "A" * 64, "@latest"],
    MODEL_KEY: [".", "..", "a/b", "-x", "k" * 64],
    COLLECTION: ["Images", "-x", "a/b", "c" * 64],
    DATA_PATH: ["..", ".", "a/../b", "a/.", "/a", "a//b", "a b", "-x/y", "s" * 256,
                "/".join(["s" * 200] * 6)],
}

HOSTILE = ["", "\n", " ", "\t", "\x00", "\x1b[31m"]


def _name(grammar: Grammar) -> str:
    return grammar.what


@pytest.mark.parametrize("grammar, value",
                         [(g, v) for g, values in GOOD.items() for v in values],
                         ids=lambda x: _name(x) if isinstance(x, Grammar) else repr(x))
def test_a_good_value_is_accepted_whole(grammar, value):
    assert grammar.matches(value)
    assert grammar.check(value) == value


@pytest.mark.parametrize("grammar, value",
                         [(g, v) for g, values in BAD.items() for v in values],
                         ids=lambda x: _name(x) if isinstance(x, Grammar) else repr(x))
def test_a_malformed_value_is_refused(grammar, value):
    assert not grammar.matches(value)


@pytest.mark.parametrize("grammar", list(GOOD), ids=_name)
@pytest.mark.parametrize("suffix", ["\n", "\r", "\r\n", "\x00", "\x7f", "\x85", "\u2028"])
def test_a_trailing_newline_or_control_character_is_refused(grammar, suffix):
    good = GOOD[grammar][0]
    assert not grammar.matches(good + suffix)
    assert not grammar.matches(suffix + good)


@pytest.mark.parametrize("grammar", list(GOOD), ids=_name)
@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_empty_and_control_only_values_are_refused(grammar, value):
    assert not grammar.matches(value)


@pytest.mark.parametrize("grammar", list(GOOD), ids=_name)
def test_a_value_longer_than_the_limit_is_refused_without_matching(grammar):
    assert not grammar.matches(GOOD[grammar][0] * (grammar.max_length + 1))


@pytest.mark.parametrize("grammar", list(GOOD), ids=_name)
def test_a_non_string_is_refused(grammar):
    assert not grammar.matches(None) and not grammar.matches(12)


def test_check_raises_the_given_error_naming_the_place_and_the_value():
    with pytest.raises(InvalidManifest) as caught:
        PIP_REQUIREMENT.check("numpy\nRUN id", InvalidManifest, "build.python_packages",
                              key="build.python_packages")
    assert "'build.python_packages'" in caught.value.message
    assert "'numpy\\nRUN id'" in caught.value.message  # shown escaped, on one line
    assert caught.value.details == {"key": "build.python_packages"}
    with pytest.raises(InvalidRequest):
        OWNER.check("demo\n")


@pytest.mark.parametrize("text, expected", [
    ("alice/hello", AlgorithmRef("alice", "hello")),
    ("alice/hello@latest", AlgorithmRef("alice", "hello", "latest")),
    ("alice/hello@1.2.3", AlgorithmRef("alice", "hello", "1.2.3")),
    ("a-b/c_d@0.0.0", AlgorithmRef("a-b", "c_d", "0.0.0")),
])
def test_a_reference_parses_into_its_parts_and_prints_back_the_same(text, expected):
    ref = AlgorithmRef.parse(text)
    assert ref == expected
    assert str(ref) == text
    assert AlgorithmRef.parse(str(ref)) == ref
    assert ref.base == f"{ref.owner}/{ref.name}"


def test_latest_exact_and_range_are_told_apart():
    assert AlgorithmRef.parse("a/b").is_latest and AlgorithmRef.parse("a/b@latest").is_latest
    exact = AlgorithmRef.parse("a/b@1.2.3")
    assert exact.is_exact and not exact.is_latest and not exact.is_range
    ranged = AlgorithmRef.parse("a/b@1.2", ranges=True)
    assert ranged.is_range and not ranged.is_exact and str(ranged) == "a/b@1.2"
    assert AlgorithmRef.parse("a/b@1", ranges=True).version == "1"


@pytest.mark.parametrize("text", [
    "demo/hello\n", "demo\n/hello", "alice", "alice/", "/hello", "alice/hello/x",
    "alice/hello@", "alice/hello@v1.2.3", "alice/hello@1.2.3-rc1", "Alice/hello",
    "alice/hello@latest\n", "alice/hello@1.2.3\x00", "", "alice/hello@@1.2.3",
    "alice/" + "h" * 64,
])
def test_a_malformed_reference_is_refused(text):
    with pytest.raises(InvalidRequest):
        AlgorithmRef.parse(text)


@pytest.mark.parametrize("text", ["alice/hello@1", "alice/hello@1.2"])
def test_ranges_are_refused_unless_asked_for(text):
    with pytest.raises(InvalidRequest):
        AlgorithmRef.parse(text)
    assert AlgorithmRef.parse(text, ranges=True).is_range


@pytest.mark.parametrize("text", ["alice/hello@latest", "alice/hello@1.2.3"])
def test_an_unversioned_reference_refuses_any_version(text):
    with pytest.raises(InvalidRequest, match="without a version"):
        AlgorithmRef.parse(text, versioned=False)
    assert AlgorithmRef.parse("alice/hello", versioned=False).version is None


@pytest.mark.parametrize("text, file, expected", [
    ("data://alice/images", False, DataUri("alice", "images", "")),
    ("data://alice/images/", False, DataUri("alice", "images", "")),
    ("data://alice/images/cats/1.png", True, DataUri("alice", "images", "cats/1.png")),
])
def test_a_data_uri_parses_into_its_parts_and_prints_back(text, file, expected):
    uri = DataUri.parse(text, file=file)
    assert uri == expected
    assert DataUri.parse(str(uri), file=file) == uri


@pytest.mark.parametrize("text, file", [
    ("data://alice/images", True), ("data://alice", False), ("data://Alice/images", False),
    ("data://alice/images/../x", False), ("data://alice/images/x\n", True),
    ("data://alice/images\n", False), ("http://alice/images", False), ("", False),
])
def test_a_malformed_data_uri_is_refused(text, file):
    with pytest.raises(InvalidRequest):
        DataUri.parse(text, file=file)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.from_regex(DATA_PATH_PATTERN, fullmatch=True).filter(lambda p: len(p) <= 1024))
def test_every_data_path_the_document_allows_the_grammar_accepts(path):
    # The document's pattern cannot look ahead, so it is written apart: held to the grammar.
    assert DATA_PATH.matches(path), path


@pytest.mark.parametrize("segment", ["@x", "=x", "+x", "-x"])
def test_a_data_path_segment_starts_as_the_grammar_says_in_both(segment):
    assert not DATA_PATH.matches(segment)
    assert not re.fullmatch(DATA_PATH_PATTERN, segment)
    assert re.fullmatch(DATA_PATH_PATTERN, "." + segment) and DATA_PATH.matches("." + segment)
