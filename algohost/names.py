"""Every name algohost accepts from outside, and `AlgorithmRef`: the one reference parser.

Owners, algorithm names, versions and ranges, secret names, apt and pip package strings
and entrypoints are checked here only, always with `fullmatch` over ASCII character
classes, so no value with a newline or a control character ever reaches a key, a Vault
path or a build step's arguments. Nothing here touches Redis, Docker or Vault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from algohost.errors import AlgohostError, InvalidRequest

_SLUG = r"[a-z0-9][a-z0-9_-]{0,62}"
_NUMBER = r"(?:0|[1-9][0-9]{0,8})"
_VERSION = rf"({_NUMBER})\.({_NUMBER})\.({_NUMBER})"
_RANGE = rf"({_NUMBER})(?:\.({_NUMBER}))?"
_MODEL = r"[a-z0-9][a-z0-9_.-]{0,62}"
_SHA256 = r"[0-9a-f]{64}"
# A segment of a file path in a data collection; never '.' or '..'.
_SEGMENT = r"(?!\.\.?(?:/|\Z))[A-Za-z0-9_.][A-Za-z0-9_.=+@-]{0,254}"
DATA_SCHEME = "data://"
LATEST = "latest"


class Grammar:
    """One kind of name: a pattern matched whole, a length limit, and how to explain it."""

    def __init__(self, what: str, regex: str, rule: str, max_length: int) -> None:
        self.what, self.rule, self.max_length = what, rule, max_length
        self.pattern = re.compile(regex)

    def fullmatch(self, text: object) -> re.Match[str] | None:
        if not isinstance(text, str) or len(text) > self.max_length:
            return None
        return self.pattern.fullmatch(text)

    def matches(self, text: object) -> bool:
        return self.fullmatch(text) is not None

    def match(self, text: str, error: type[AlgohostError] = InvalidRequest, where: str = "",
              **details: Any) -> re.Match[str]:
        """The match of `text`, or `error` saying what this name must look like (and where)."""
        found = self.fullmatch(text)
        if found is None:
            place = f"'{where}': " if where else ""
            raise error(f"{place}{self.what} is {self.rule}; got {_shown(text)}", **details)
        return found

    def check(self, text: str, error: type[AlgohostError] = InvalidRequest, where: str = "",
              **details: Any) -> str:
        """`text` itself, or `error` saying what this name must look like (and where)."""
        return self.match(text, error, where, **details).string


def _shown(text: object) -> str:
    # repr() escapes newlines and control characters; a long value is cut.
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


OWNER = Grammar("an owner", _SLUG, "1-63 lowercase letters, digits, '-' or '_', "
                "starting with a letter or digit", 63)
ALGORITHM_NAME = Grammar("an algorithm name", _SLUG, "1-63 lowercase letters, digits, '-' "
                         "or '_', starting with a letter or digit", 63)
VERSION = Grammar("a version", _VERSION, "MAJOR.MINOR.PATCH, like 1.2.3", 29)
VERSION_RANGE = Grammar("a version range", _RANGE, "MAJOR or MAJOR.MINOR, like 1 or 1.2", 19)
SECRET_NAME = Grammar("a secret name", r"[A-Z_][A-Z0-9_]{0,127}",
                      "1-128 characters of A-Z, 0-9 and '_', not starting with a digit", 128)
# Debian package names (policy 5.6.1), optionally pinned with =version.
APT_PACKAGE = Grammar("an apt package", r"[a-z0-9][a-z0-9+.-]+(?:=[A-Za-z0-9.+~:-]+)?",
                      "a Debian package name, optionally =version", 256)
# A PEP 508 requirement or a URL pip accepts: printable ASCII only, never an option.
PIP_REQUIREMENT = Grammar("a pip requirement", r"[A-Za-z0-9][\x20-\x7e]*",
                          "printable ASCII starting with a letter or digit (no pip options)",
                          1024)
# A blob's content address: the hex SHA-256 of its bytes.
SHA256 = Grammar("a sha256 digest", _SHA256, "64 lowercase hex digits", 64)
SHA256_PATTERN = rf"^{_SHA256}$"  # for JSON Schema (OpenAPI)
MODEL_NAME = Grammar("a model name", _MODEL, "1-63 lowercase letters, "
                     "digits, '.', '-' or '_', starting with a letter or digit", 63)
# NAME@latest or NAME@sha256:<hex>; groups: the name, then the tag.
MODEL_REF = Grammar("a model reference", rf"({_MODEL})@(latest|sha256:{_SHA256})",
                    "NAME@latest or NAME@sha256:<64 lowercase hex>", 150)
COLLECTION = Grammar("a collection name", _MODEL, "1-63 lowercase letters, digits, '.', "
                     "'-' or '_', starting with a letter or digit", 63)
DATA_PATH = Grammar("a file path in a collection", rf"{_SEGMENT}(?:/{_SEGMENT})*",
                    "'/'-separated segments of letters, digits and _ . = + @ -, "
                    "none of them '.' or '..'", 1024)
# The same rules for JSON Schema (OpenAPI), which has no lookaround: a segment that is
# never '.' or '..' starts with no dot, or with one dot and then no dot, or with two and more.
# A segment starts as _SEGMENT's does: a letter, digit, '_' or '.'.
_DOC_SEGMENT = (r"(?:[A-Za-z0-9_][A-Za-z0-9_.=+@-]{0,254}"
                r"|\.[A-Za-z0-9_=+@-][A-Za-z0-9_.=+@-]{0,253}|\.\.[A-Za-z0-9_.=+@-]{1,253})")
COLLECTION_PATTERN = rf"^{_MODEL}$"
DATA_PATH_PATTERN = rf"^{_DOC_SEGMENT}(?:/{_DOC_SEGMENT})*$"
DATA_PREFIX_PATTERN = rf"^/*(?:{_DOC_SEGMENT}(?:/{_DOC_SEGMENT})*)?/*$"
# The mount /models/<key>.
MODEL_KEY = Grammar("a model key", r"(?!\.\.?$)[A-Za-z0-9_.][A-Za-z0-9_.-]{0,62}",
                    "1-63 letters, digits, '_', '.' or '-' (not . or ..)", 63)
# A custom metric an algorithm reports during a call (`algohost_runtime.log_metric`).
# Where a version's source came from, as `algohost publish --git` reports it (metadata only:
# the server never runs git). SHA-1 ids are 40 hex digits, SHA-256 repositories' 64.
_GIT_COMMIT = r"[0-9a-f]{40}(?:[0-9a-f]{24})?"
_GIT_REF = r"[A-Za-z0-9_][A-Za-z0-9_./@+~^-]{0,254}"
GIT_COMMIT = Grammar("a git commit id", _GIT_COMMIT, "40 or 64 lowercase hex digits", 64)
GIT_COMMIT_PATTERN = rf"^{_GIT_COMMIT}$"
GIT_REF = Grammar("a git ref", _GIT_REF, "1-255 letters, digits or '_./@+~^-'", 255)
GIT_REF_PATTERN = rf"^{_GIT_REF}$"
METRIC_NAME = Grammar("a metric name", r"[a-z][a-z0-9_.]{0,62}", "1-63 lowercase letters, "
                      "digits, '_' or '.', starting with a letter", 63)
IDEMPOTENCY_KEY = Grammar("an Idempotency-Key", r"[A-Za-z0-9_.:~+/=-]{1,255}",
                          "1-255 letters, digits or '_.:~+/=-' (a UUID is a good one)", 255)
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9_.:~+/=-]{1,255}$"  # the same, for the document
# A pipeline's name, and a step's name inside it (it appears in `$steps.NAME.output`).
PIPELINE_NAME = Grammar("a pipeline name", _SLUG, "1-63 lowercase letters, digits, '-' or "
                        "'_', starting with a letter or digit", 63)
STEP_NAME = Grammar("a step name", r"[a-z0-9][a-z0-9_]{0,62}", "1-63 lowercase letters, "
                    "digits or '_', starting with a letter or digit", 63)
STEP_NAME_PATTERN = r"^[a-z0-9][a-z0-9_]{0,62}$"  # for JSON Schema (OpenAPI)
# A notebook's path inside the algorithm: no segment starts with '.', so never '..'.
_NOTEBOOK = r"(?:[A-Za-z0-9_][A-Za-z0-9_.-]*/)*[A-Za-z0-9_][A-Za-z0-9_.-]*\.ipynb"
ENTRYPOINT = Grammar("an entrypoint",
                     rf"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*|{_NOTEBOOK}",
                     "'module:function', or a notebook's path ending in .ipynb", 255)


def validate_owner(owner: str) -> str:
    return OWNER.check(owner, owner=owner[:64])


def validate_algorithm_name(name: str) -> str:
    return ALGORITHM_NAME.check(name, name=name[:64])


def validate_secret_name(secret: str) -> str:
    return SECRET_NAME.check(secret, secret=secret[:128])


_REF_BODY = rf"({_SLUG})/({_SLUG})(?:@({LATEST}|{_NUMBER}(?:\.{_NUMBER}(?:\.{_NUMBER})?)?))?"
_REF = re.compile(_REF_BODY)
# For JSON Schema (OpenAPI): the references a call may name, anchored.
REF_PATTERN = rf"^{_SLUG}/{_SLUG}(@({LATEST}|{_NUMBER}(\.{_NUMBER}(\.{_NUMBER})?)?))?$"
REF_FORMS = ("owner/name, owner/name@latest, owner/name@1.2.3, or a range: owner/name@1 "
             "or owner/name@1.2 (the newest successful, unyanked version in it)")
# A pipeline step's algorithm: a reference as above, or one without the owner (the
# pipeline's own), so a spec can be published by any owner who has the same algorithms.
STEP_REF_PATTERN = (rf"^(?:{_SLUG}/)?{_SLUG}"
                    rf"(@({LATEST}|{_NUMBER}(\.{_NUMBER}(\.{_NUMBER})?)?))?$")


@dataclass(frozen=True)
class AlgorithmRef:
    """`owner/name[@version]`; `version` is None (not given), `latest`, exact, or a range."""

    owner: str
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, text: str, *, versioned: bool = True, ranges: bool = False) -> AlgorithmRef:
        """Parse a reference; `versioned=False` refuses any @version, `ranges` allows @1, @1.2."""
        match = _REF.fullmatch(text) if isinstance(text, str) and len(text) <= 160 else None
        if match is None:
            raise InvalidRequest(f"{_shown(text)} is not an algorithm reference: {REF_FORMS}",
                                 ref=str(text)[:160])
        owner, name, version = match.groups()
        if version is not None:
            if not versioned:
                raise InvalidRequest(f"{_shown(text)}: give owner/name without a version",
                                     ref=text)
            if not ranges and version != LATEST and not VERSION.matches(version):
                raise InvalidRequest(f"{_shown(text)}: the version must be 'latest' or "
                                     f"{VERSION.rule}", ref=text)
        return cls(owner, name, version)

    @property
    def base(self) -> str:
        """`owner/name`, without the version."""
        return f"{self.owner}/{self.name}"

    @property
    def is_latest(self) -> bool:
        """No version or @latest: the newest successful build."""
        return self.version is None or self.version == LATEST

    @property
    def is_exact(self) -> bool:
        return VERSION.matches(self.version)

    @property
    def is_range(self) -> bool:
        return VERSION_RANGE.matches(self.version)

    def __str__(self) -> str:
        return self.base if self.version is None else f"{self.base}@{self.version}"


_DATA_URI = re.compile(rf"data://({_SLUG})/([^/]+)(?:/(.*))?")


@dataclass(frozen=True)
class DataUri:
    """`data://OWNER/COLLECTION[/PATH]`; `path` is "" for the collection itself."""

    owner: str
    collection: str
    path: str

    @classmethod
    def parse(cls, text: str, *, file: bool = False) -> DataUri:
        """Parse a data URI; `file=True` requires a path inside the collection."""
        match = _DATA_URI.fullmatch(text) if isinstance(text, str) else None
        if match is None or not COLLECTION.matches(match.group(2)):
            raise InvalidRequest(f"{_shown(text)} is not data://OWNER/COLLECTION[/PATH]")
        owner, collection, path = match.group(1), match.group(2), (match.group(3) or "")
        path = path.strip("/")
        if path or file:
            DATA_PATH.check(path)
        return cls(owner, collection, path)

    def __str__(self) -> str:
        base = f"{DATA_SCHEME}{self.owner}/{self.collection}"
        return f"{base}/{self.path}" if self.path else base
