"""Vault (or OpenBao) behind the secrets seam, through hvac: KV v2, one path per algorithm.

The API's store writes, lists and deletes but cannot read a value back; the worker's
reader reads with short-lived tokens scoped to one algorithm. hvac and requests
errors are translated here and never leak upward.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests

from algohost.config import Settings
from algohost.errors import AlgohostError, SecretNotFound, SecretsForbidden, SecretsUnavailable
from algohost.secrets.base import SecretMeta, SecretReader, SecretStore, version_tag
from algohost.secrets.layout import (
    algorithm_policy,
    algorithm_policy_name,
    algorithm_prefix,
    secret_path,
)

TIMEOUT_S = 5.0
TOKEN_USES = 16
# Server-side trouble that may pass: down, sealed, overloaded, not yet initialised.
TRANSIENT = (hvac.exceptions.VaultDown, hvac.exceptions.InternalServerError,
             hvac.exceptions.BadGateway, hvac.exceptions.RateLimitExceeded,
             hvac.exceptions.VaultNotInitialized, hvac.exceptions.UnexpectedError)
REFUSED = (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized)
_VAULT_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$")


class TokenSource:
    """A Vault token given as a value or as a file, re-read on each use so it can rotate."""

    def __init__(self, token: str = "", path: str = "", who: str = "algohost") -> None:
        self.token, self.path, self.who = token, path, who

    def __call__(self) -> str:
        if self.path:
            try:
                value = Path(self.path).expanduser().read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise SecretsUnavailable(
                    f"cannot read {self.who}'s Vault token file {self.path}") from exc
            if value:
                return value
        if self.token:
            return self.token
        raise SecretsUnavailable(f"no Vault token is configured for {self.who}")


@contextmanager
def translate(action: str,
              refused: type[AlgohostError] | None = SecretsUnavailable) -> Iterator[None]:
    """Map transport and server failures to SecretsUnavailable, refusals to `refused`
    (or let them through when it is None, for a caller that retries)."""
    try:
        yield
    except requests.RequestException as exc:
        raise SecretsUnavailable(f"Vault is unreachable while {action}") from exc
    except TRANSIENT as exc:
        raise SecretsUnavailable(
            f"Vault cannot answer while {action} ({type(exc).__name__})") from exc
    except REFUSED as exc:
        if refused is None:
            raise
        raise refused(f"Vault refused the token while {action}") from exc
    except hvac.exceptions.InvalidRequest as exc:
        raise SecretsUnavailable(f"Vault rejected the request while {action}: {exc}") from exc


def vault_time(text: str) -> str:
    """Vault's RFC 3339 nanosecond times in algohost's millisecond format."""
    match = _VAULT_TIME.match(text or "")
    if not match:
        return text
    return f"{match.group(1)}.{(match.group(2) or '')[:3].ljust(3, '0')}Z"


def _meta(secret: str, data: dict[str, Any]) -> SecretMeta:
    return SecretMeta(name=secret, version=int(data["current_version"]),
                      created_at=vault_time(str(data["created_time"])),
                      updated_at=vault_time(str(data["updated_time"])))


def _client(url: str, token: str) -> hvac.Client:
    # A client per operation: requests sessions are not safe to share across the
    # worker's threads, and the token may have rotated since the last one.
    return hvac.Client(url=url, token=token, timeout=TIMEOUT_S)


class VaultSecretStore(SecretStore):
    """What the API does with secrets; its token has no read on values."""

    def __init__(self, url: str, token: TokenSource, mount: str = "secret") -> None:
        self.url, self.token, self.mount = url, token, mount

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultSecretStore:
        return cls(settings.vault_url,
                   TokenSource(settings.vault_token, settings.vault_token_file, "the API"),
                   settings.vault_mount)

    def _kv(self) -> Any:
        return _client(self.url, self.token()).secrets.kv.v2

    def put(self, owner: str, name: str, secret: str, value: str) -> SecretMeta:
        path = secret_path(owner, name, secret)
        # Every write refreshes the policy: it may not exist yet (Vault was down at
        # publish time) or may have been lost (a dev server keeps nothing).
        self.ensure_policy(owner, name)
        kv = self._kv()
        with translate(f"writing secret {secret}"):
            kv.create_or_update_secret(path, {"value": value}, mount_point=self.mount)
            data = kv.read_secret_metadata(path, mount_point=self.mount)["data"]
        return _meta(secret, data)

    def list(self, owner: str, name: str) -> list[SecretMeta]:
        prefix = algorithm_prefix(owner, name)
        kv = self._kv()
        with translate("listing secrets"):
            try:
                keys = kv.list_secrets(prefix, mount_point=self.mount)["data"]["keys"]
            except hvac.exceptions.InvalidPath:
                return []
            metas = []
            for key in sorted(k for k in keys if not k.endswith("/")):
                try:
                    data = kv.read_secret_metadata(f"{prefix}/{key}", mount_point=self.mount)
                except hvac.exceptions.InvalidPath:
                    continue  # deleted between the listing and this read
                metas.append(_meta(key, data["data"]))
        return metas

    def delete(self, owner: str, name: str, secret: str) -> bool:
        path = secret_path(owner, name, secret)
        kv = self._kv()
        with translate(f"deleting secret {secret}"):
            try:
                kv.read_secret_metadata(path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return False
            kv.delete_metadata_and_all_versions(path, mount_point=self.mount)
        return True

    def ensure_policy(self, owner: str, name: str) -> None:
        policy = algorithm_policy(self.mount, owner, name)
        client = _client(self.url, self.token())
        with translate(f"writing the policy of {owner}/{name}"):
            client.sys.create_or_update_acl_policy(algorithm_policy_name(owner, name), policy)


@dataclass
class _ScopedToken:
    value: str
    expires_at: float
    uses_left: int


class VaultReader(SecretReader):
    """Reads one algorithm's secrets with a token that can read nothing else.

    Tokens are minted through a token role, cached per algorithm, and replaced
    shortly before they expire or run out of uses."""

    def __init__(self, url: str, worker_token: TokenSource, *, mount: str = "secret",
                 role: str = "algohost-worker", ttl_s: int = 300, uses: int = TOKEN_USES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url, self.worker_token, self.mount, self.role = url, worker_token, mount, role
        self.ttl_s, self.uses, self.clock = ttl_s, uses, clock
        self.margin_s = min(30.0, ttl_s / 4)
        self._tokens: dict[str, _ScopedToken] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultReader:
        token = TokenSource(settings.vault_worker_token, settings.vault_worker_token_file,
                            "the worker")
        return cls(settings.vault_url, token, mount=settings.vault_mount,
                   role=settings.vault_role, ttl_s=settings.secret_token_ttl_s)

    def read(self, owner: str, name: str, names: list[str]) -> tuple[dict[str, str], str]:
        if not names:
            return {}, ""
        policy = algorithm_policy_name(owner, name)
        paths = {secret: secret_path(owner, name, secret) for secret in names}
        for fresh in (False, True):
            token = self._token(policy, len(paths), fresh)
            try:
                return self._read_all(token, owner, name, paths)
            except REFUSED as exc:
                # A cached token may have been revoked (a restarted dev server forgets
                # every token): retry once with a new one before calling it a refusal.
                self._forget(policy)
                if fresh:
                    raise SecretsForbidden(
                        f"Vault refused the token scoped to {owner}/{name}; is its policy "
                        f"{policy} in place?", algorithm=f"{owner}/{name}") from exc
        raise AssertionError("unreachable")

    def _read_all(self, token: str, owner: str, name: str,
                  paths: dict[str, str]) -> tuple[dict[str, str], str]:
        kv = _client(self.url, token).secrets.kv.v2
        values: dict[str, str] = {}
        versions: list[tuple[str, int, str]] = []
        for secret, path in paths.items():
            with translate(f"reading the secrets of {owner}/{name}", refused=None):
                try:
                    body = kv.read_secret_version(path, mount_point=self.mount,
                                                  raise_on_deleted_version=True)["data"]
                except hvac.exceptions.InvalidPath as exc:
                    raise SecretNotFound(
                        f"secret {secret} is named in the manifest of {owner}/{name} but is "
                        f"not set (algohost secrets set {owner}/{name} {secret})",
                        secret=secret) from exc
            if not isinstance(body.get("data"), dict) or "value" not in body["data"]:
                raise SecretNotFound(f"secret {secret} of {owner}/{name} has no value",
                                     secret=secret)
            values[secret] = str(body["data"]["value"])
            meta = body.get("metadata") or {}
            versions.append((secret, int(meta.get("version", 0)), str(meta.get("created_time"))))
        return values, version_tag(versions)

    def _token(self, policy: str, needed: int, fresh: bool) -> str:
        with self._lock:
            cached = self._tokens.get(policy)
            if (cached is not None and not fresh and cached.uses_left >= needed
                    and cached.expires_at - self.margin_s > self.clock()):
                cached.uses_left -= needed
                return cached.value
        minted = self._mint(policy, max(self.uses, needed))
        minted.uses_left -= needed
        with self._lock:
            self._tokens[policy] = minted
        return minted.value

    def _mint(self, policy: str, uses: int) -> _ScopedToken:
        client = _client(self.url, self.worker_token())
        started = self.clock()
        with translate(f"creating a token for {policy}"):
            auth = client.auth.token.create(
                role_name=self.role, policies=[policy], ttl=f"{self.ttl_s}s", num_uses=uses,
                renewable=False, display_name=policy)["auth"]
        lease_s = float(auth.get("lease_duration") or self.ttl_s)
        return _ScopedToken(str(auth["client_token"]), started + lease_s, uses)

    def _forget(self, policy: str) -> None:
        with self._lock:
            self._tokens.pop(policy, None)
