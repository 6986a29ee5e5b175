"""Where algohost keeps secrets in Vault, and the ACL policies that guard them.

One KV v2 secret per (algorithm, NAME) under one prefix per algorithm. Policy
texts are built here only; nothing in this module talks to Vault.
"""

from __future__ import annotations

from algohost.names import validate_algorithm_name, validate_owner, validate_secret_name

ROOT = "algohost"
API_POLICY = "algohost-api"
WORKER_POLICY = "algohost-worker"
ALGO_POLICY_PREFIX = "algohost-algo-"


def _check_algorithm(owner: str, name: str) -> None:
    # The names end up inside Vault paths and policy texts: refuse anything else.
    validate_owner(owner)
    validate_algorithm_name(name)


def algorithm_prefix(owner: str, name: str) -> str:
    """The KV path (relative to the mount) holding one algorithm's secrets."""
    _check_algorithm(owner, name)
    return f"{ROOT}/{owner}/{name}"


def secret_path(owner: str, name: str, secret: str) -> str:
    return f"{algorithm_prefix(owner, name)}/{validate_secret_name(secret)}"


def algorithm_policy_name(owner: str, name: str) -> str:
    # '.' cannot occur in an owner or a name, so `a-b`/`c` and `a`/`b-c` never share a policy.
    _check_algorithm(owner, name)
    return f"{ALGO_POLICY_PREFIX}{owner}.{name}"


def algorithm_policy(mount: str, owner: str, name: str) -> str:
    """Read on this algorithm's values, nothing else: no list, no metadata, no other path."""
    prefix = algorithm_prefix(owner, name)
    return f'path "{mount}/data/{prefix}/*" {{\n  capabilities = ["read"]\n}}\n'


def api_policy(mount: str) -> str:
    """Write, list and delete secrets and per-algorithm policies; never read a value."""
    return (
        f'path "{mount}/data/{ROOT}/*" {{\n  capabilities = ["create", "update"]\n}}\n'
        f'path "{mount}/metadata/{ROOT}/*" {{\n'
        '  capabilities = ["read", "list", "delete"]\n}\n'
        f'path "sys/policies/acl/{ALGO_POLICY_PREFIX}*" {{\n'
        '  capabilities = ["create", "update"]\n}\n'
    )


def worker_policy(role: str) -> str:
    """Only mint tokens through the role; the role limits them to algorithm policies."""
    return f'path "auth/token/create/{role}" {{\n  capabilities = ["update"]\n}}\n'
