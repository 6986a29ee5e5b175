"""A real OpenBao dev server for tests that need Vault (the `vault` fixture starts one per module).

Every token it hands out is made the way `algohost dev up` makes them (devserver.py).
"""

import re
import socket

import hvac

from algohost.config import Settings
from algohost.dev.openbao import (
    API_TOKEN_FILE,
    LOG_FILE,
    ROOT_TOKEN_FILE,
    WORKER_TOKEN_FILE,
    ensure_dev_server,
    stop_dev_server,
)
from tests.waiting import eventually


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Vault:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.address = f"127.0.0.1:{free_port()}"
        self.info = ensure_dev_server(state_dir, self.address, log=lambda line: None)
        self.url = self.info["url"]
        self.settings = Settings(vault_url=self.url,
                                 vault_token_file=str(state_dir / API_TOKEN_FILE),
                                 vault_worker_token_file=str(state_dir / WORKER_TOKEN_FILE))

    def token(self, file_name):
        return (self.state_dir / file_name).read_text().strip()

    def client(self, file_name):
        return hvac.Client(url=self.url, token=self.token(file_name), timeout=5)

    def unseal_key(self):
        """The dev server prints it in its banner, a moment after it starts answering."""
        keys = eventually(
            lambda: re.findall(r"Unseal Key: (\S+)", (self.state_dir / LOG_FILE).read_text()),
            15, "the unseal key in the dev server's log")
        return keys[-1]

    def restart(self):
        stop_dev_server(self.state_dir)
        ensure_dev_server(self.state_dir, self.address, log=lambda line: None)

    def sealed(self):
        """A context in which the server answers but is sealed, as after a restart."""
        return _Sealed(self)


class _Sealed:
    def __init__(self, vault):
        self.vault = vault
        self.root = hvac.Client(url=vault.url, token=vault.token(ROOT_TOKEN_FILE), timeout=5)

    def __enter__(self):
        self.key = self.vault.unseal_key()
        self.root.sys.seal()

    def __exit__(self, *exc_info):
        self.root.sys.submit_unseal_key(self.key)
