"""The worker's view of secrets: the values a build's manifest names, and their version tag.

An algorithm that names no secrets never causes a request to Vault, so jobs that
need no secrets keep running while Vault is down.
"""

from __future__ import annotations

from typing import Protocol

from algohost.manifest import Manifest
from algohost.secrets.base import SecretReader


class Build(Protocol):
    """What this needs of a build record (the store's BuildRecord), without importing it."""

    @property
    def owner(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def manifest(self) -> Manifest: ...


class VaultSecretSource:
    """Implements the worker's `SecretSource` on top of any `SecretReader`."""

    def __init__(self, reader: SecretReader) -> None:
        self.reader = reader

    def for_build(self, build: Build) -> tuple[dict[str, str], str]:
        names = build.manifest.secrets.names
        if not names:
            return {}, ""
        return self.reader.read(build.owner, build.name, list(names))
