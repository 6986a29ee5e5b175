"""The worker's view of secrets: the values a build's manifest names, and their version tag.

An algorithm that names no secrets never causes a request to Vault, so jobs that
need no secrets keep running while Vault is down.
"""

from __future__ import annotations

from typing import Any

from algohost.secrets.base import SecretReader


class VaultSecretSource:
    """Implements the worker's `SecretSource` on top of any `SecretReader`."""

    def __init__(self, reader: SecretReader) -> None:
        self.reader = reader

    def for_build(self, build: dict[str, Any]) -> tuple[dict[str, str], str]:
        names = list((build.get("manifest") or {}).get("secrets", {}).get("names") or [])
        if not names:
            return {}, ""
        return self.reader.read(build["owner"], build["name"], names)
