"""An in-memory secret store and reader with Vault's observable behaviour, for unit tests.

It keeps versions and timestamps, refuses reads for algorithms without a policy,
and can be switched `down`; it must never be used outside tests.
"""

from __future__ import annotations

import builtins
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from algohost.clock import now_iso
from algohost.errors import SecretNotFound, SecretsForbidden, SecretsUnavailable
from algohost.secrets.base import SecretMeta, SecretReader, SecretStore, version_tag
from algohost.secrets.layout import algorithm_policy_name, algorithm_prefix, secret_path


@dataclass
class _Entry:
    value: str
    version: int
    created_at: str
    updated_at: str
    # Vault's creation times are nanosecond-precise: a secret deleted and set again
    # within the same millisecond still gets a new version tag there, so here too.
    created_seq: int = 0


class MemorySecrets(SecretStore, SecretReader):
    def __init__(self, clock: Callable[[], str] = now_iso) -> None:
        self.clock = clock
        self.down = False
        self.policies: set[str] = set()
        self._entries: dict[str, _Entry] = {}
        self._created = itertools.count(1)
        self._lock = threading.Lock()

    def _check_up(self) -> None:
        if self.down:
            raise SecretsUnavailable("the in-memory secret store is down")

    def put(self, owner: str, name: str, secret: str, value: str) -> SecretMeta:
        path = secret_path(owner, name, secret)
        self.ensure_policy(owner, name)
        now = self.clock()
        with self._lock:
            old = self._entries.get(path)
            entry = (_Entry(value, old.version + 1, old.created_at, now, old.created_seq) if old
                     else _Entry(value, 1, now, now, next(self._created)))
            self._entries[path] = entry
        return SecretMeta(name=secret, version=entry.version, created_at=entry.created_at,
                          updated_at=entry.updated_at)

    def list(self, owner: str, name: str) -> list[SecretMeta]:
        self._check_up()
        prefix = algorithm_prefix(owner, name) + "/"
        with self._lock:
            found = sorted(((path[len(prefix):], entry) for path, entry in self._entries.items()
                            if path.startswith(prefix)), key=lambda item: item[0])
        return [SecretMeta(name=secret, version=e.version, created_at=e.created_at,
                           updated_at=e.updated_at) for secret, e in found]

    def delete(self, owner: str, name: str, secret: str) -> bool:
        self._check_up()
        with self._lock:
            return self._entries.pop(secret_path(owner, name, secret), None) is not None

    def ensure_policy(self, owner: str, name: str) -> None:
        self._check_up()
        self.policies.add(algorithm_policy_name(owner, name))

    def read(self, owner: str, name: str,
             names: builtins.list[str]) -> tuple[dict[str, str], str]:
        if not names:
            return {}, ""
        paths = {secret: secret_path(owner, name, secret) for secret in names}  # as Vault: first
        self._check_up()
        if algorithm_policy_name(owner, name) not in self.policies:
            raise SecretsForbidden(f"no policy for {owner}/{name}")
        values: dict[str, str] = {}
        versions: builtins.list[tuple[str, int, str]] = []
        with self._lock:
            for secret, path in paths.items():
                entry = self._entries.get(path)
                if entry is None:
                    raise SecretNotFound(f"secret {secret} of {owner}/{name} is not set",
                                         secret=secret)
                values[secret] = entry.value
                versions.append((secret, entry.version,
                                 f"{entry.created_at}#{entry.created_seq}"))
        return values, version_tag(versions)
