"""Secrets: set once through the API, kept in Vault (KV v2), read by workers at run time.

Values never reach the store, the job record, logs or the image; whatever an
algorithm hands back is redacted before it is recorded.
"""

from algohost.secrets.base import SecretMeta, SecretReader, SecretStore, version_tag
from algohost.secrets.memory import MemorySecrets
from algohost.secrets.redaction import MASK, redact, redact_text
from algohost.secrets.source import VaultSecretSource
from algohost.secrets.vault import TokenSource, VaultReader, VaultSecretStore

__all__ = [
    "MASK",
    "MemorySecrets",
    "SecretMeta",
    "SecretReader",
    "SecretStore",
    "TokenSource",
    "VaultReader",
    "VaultSecretSource",
    "VaultSecretStore",
    "redact",
    "redact_text",
    "version_tag",
]
