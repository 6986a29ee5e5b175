"""One-time (and repeatable) Vault setup with a root token: mount, policies, token role, tokens.

Run by an operator, or by the dev server helper; idempotent, so running it again
changes nothing that is already right. The root token is used here and nowhere else.
"""

from __future__ import annotations

import secrets
from typing import Any

import hvac
import hvac.exceptions

from algohost.config import Settings
from algohost.errors import AlgohostError
from algohost.secrets.layout import (
    ALGO_POLICY_PREFIX,
    API_POLICY,
    WORKER_POLICY,
    api_policy,
    worker_policy,
)
from algohost.secrets.vault import TIMEOUT_S, translate

SERVICE_TOKEN_TTL = "768h"  # Vault's default maximum; operators renew or re-run bootstrap
RENEW_BELOW_S = 7 * 24 * 3600


def role_settings(ttl_s: int) -> dict[str, Any]:
    """Tokens minted through the role: one algorithm's policy only, short-lived, no children."""
    return {
        "allowed_policies_glob": [f"{ALGO_POLICY_PREFIX}*"],
        "disallowed_policies": ["root", API_POLICY, WORKER_POLICY],
        "orphan": True,  # not revoked with (or tied to the lifetime of) the worker's token
        "renewable": False,
        "token_explicit_max_ttl": ttl_s,
        "token_no_default_policy": True,
        "token_type": "service",  # batch tokens cannot carry a use limit
    }


def bootstrap(vault_url: str, root_token: str, settings: Settings, *, api_token: str = "",
              worker_token: str = "") -> dict[str, str]:
    """Create or refresh everything algohost needs; returns the API's and the worker's tokens.

    Tokens passed in are kept when they still exist with the right policy, and
    recreated under the same id when they do not (a dev server forgets them all),
    so running services holding them recover without a restart."""
    client = hvac.Client(url=vault_url, token=root_token, timeout=TIMEOUT_S)
    mount, role = settings.vault_mount, settings.vault_role
    with translate("bootstrapping Vault"):
        _ensure_kv2(client, mount)
        client.sys.create_or_update_acl_policy(API_POLICY, api_policy(mount))
        client.sys.create_or_update_acl_policy(WORKER_POLICY, worker_policy(role))
        client.write_data(f"auth/token/roles/{role}",
                          data=role_settings(settings.secret_token_ttl_s))
        api = _ensure_token(client, api_token, API_POLICY)
        worker = _ensure_token(client, worker_token, WORKER_POLICY)
    return {"url": vault_url, "mount": mount, "role": role, "api_token": api,
            "worker_token": worker}


def _ensure_kv2(client: hvac.Client, mount: str) -> None:
    mounts = client.sys.list_mounted_secrets_engines()
    entry = mounts.get("data", mounts).get(f"{mount}/")
    if entry is None:
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"},
                                         description="algohost secrets")
        return
    if entry.get("type") != "kv" or (entry.get("options") or {}).get("version") != "2":
        raise AlgohostError(f"Vault's {mount}/ is not a KV version 2 engine; set "
                            "ALGOHOST_VAULT_MOUNT to one that is")


def _ensure_token(client: hvac.Client, wanted: str, policy: str) -> str:
    if wanted:
        try:
            data = client.auth.token.lookup(wanted)["data"]
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidRequest):
            data = None  # unknown token: recreate it under the same id below
        if data is not None:
            if policy in data.get("policies", []) and int(data.get("ttl", 0)) > RENEW_BELOW_S:
                return wanted
            client.auth.token.revoke(wanted)
    created = client.auth.token.create(
        id=wanted if _reusable_id(wanted) else new_token_id(), policies=[policy],
        no_parent=True, ttl=SERVICE_TOKEN_TTL, renewable=True, display_name=policy)
    return str(created["auth"]["client_token"])


def new_token_id() -> str:
    # Our own id (Vault refuses custom ids with '.' or its 's.' prefix), so that the
    # same token can be recreated after a dev server restart.
    return "ahv-" + secrets.token_urlsafe(32)


def _reusable_id(token: str) -> bool:
    return bool(token) and "." not in token
