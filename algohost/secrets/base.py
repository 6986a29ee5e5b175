"""The secrets seam: a `SecretStore` the API writes through, a `SecretReader` workers read with.

A store never hands a value back; only a reader does, and only for one
algorithm's names at a time. Both raise algohost errors, never vendor ones.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterable
from typing import TypedDict


class SecretMeta(TypedDict):
    """What may be shown about a secret: never its value."""

    name: str
    version: int
    created_at: str
    updated_at: str


class SecretStore(abc.ABC):
    @abc.abstractmethod
    def put(self, owner: str, name: str, secret: str, value: str) -> SecretMeta:
        """Create or update a secret (a new version); returns its metadata."""

    @abc.abstractmethod
    def list(self, owner: str, name: str) -> list[SecretMeta]:
        """The algorithm's secrets, sorted by name: metadata only."""

    @abc.abstractmethod
    def delete(self, owner: str, name: str, secret: str) -> bool:
        """Remove a secret and all its versions; False if there was none."""

    @abc.abstractmethod
    def ensure_policy(self, owner: str, name: str) -> None:
        """Create or refresh the policy that lets the algorithm's runs read its secrets."""


class SecretReader(abc.ABC):
    @abc.abstractmethod
    def read(self, owner: str, name: str, names: list[str]) -> tuple[dict[str, str], str]:
        """Values by name and a version tag that changes whenever any of them changes.

        Raises SecretNotFound naming a missing secret, SecretsUnavailable when
        the backend cannot answer, SecretsForbidden when it refuses."""


def version_tag(versions: Iterable[tuple[str, int, str]]) -> str:
    """A short tag from (name, version, created time) triples, never from values.

    The creation time is part of it because a secret deleted and set again starts
    over at version 1; values stay out so the tag reveals nothing about them."""
    digest = hashlib.sha256()
    for name, version, created in sorted(versions):
        digest.update(f"{name}\0{version}\0{created}\n".encode())
    return digest.hexdigest()[:16]
