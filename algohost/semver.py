"""Semantic versions of builds: parse, order and bump `MAJOR.MINOR.PATCH`.

The grammar is `names.VERSION`; this module only compares and bumps. Pre-release and
build metadata are not used by algohost and are rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from algohost.names import VERSION, VERSION_RANGE

FIRST = "0.1.0"


class Bump(StrEnum):
    PATCH = "patch"
    MINOR = "minor"
    MAJOR = "major"


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> Version:
        match = VERSION.match(text, value=str(text)[:64])
        return cls(*(int(part) for part in match.groups()))

    def bump(self, part: Bump) -> Version:
        if part is Bump.MAJOR:
            return Version(self.major + 1, 0, 0)
        if part is Bump.MINOR:
            return Version(self.major, self.minor + 1, 0)
        return Version(self.major, self.minor, self.patch + 1)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def next_version(existing: list[str], part: Bump) -> str:
    """The version a new publish gets: 0.1.0 first, then a bump of the newest."""
    if not existing:
        return FIRST
    return str(max(Version.parse(v) for v in existing).bump(part))


def newest(versions: list[str]) -> str | None:
    return str(max(Version.parse(v) for v in versions)) if versions else None


@dataclass(frozen=True)
class Range:
    """`MAJOR` or `MAJOR.MINOR` (names.VERSION_RANGE): the versions that start with it."""

    major: int
    minor: int | None = None

    @classmethod
    def parse(cls, text: str) -> Range:
        match = VERSION_RANGE.match(text, value=str(text)[:64])
        major, minor = match.groups()
        return cls(int(major), None if minor is None else int(minor))

    def __contains__(self, version: Version) -> bool:
        return version.major == self.major and self.minor in (None, version.minor)

    def __str__(self) -> str:
        return str(self.major) if self.minor is None else f"{self.major}.{self.minor}"


def newest_in(versions: list[str], wanted: Range) -> list[str]:
    """The versions inside `wanted`, newest first."""
    inside = [parsed for parsed in map(Version.parse, versions) if parsed in wanted]
    return [str(v) for v in sorted(inside, reverse=True)]
