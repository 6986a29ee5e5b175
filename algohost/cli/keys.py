"""`algohost keys`: API keys, made by talking to Redis directly (for operators).

A key is printed once and stored only as a hash; this module never writes it to disk.
"""

from __future__ import annotations

import click

from algohost.cli.common import CliContext, emit_json, json_option, pass_ctx
from algohost.config import Settings
from algohost.errors import AlgohostError


def create_key(settings: Settings, owner: str) -> str:
    """A new key for `owner`; store errors become click errors at this boundary."""
    # Imported here so API-only commands do not need the store's dependencies loaded.
    from algohost.store import connect
    from algohost.store.keys import KeyStore

    try:
        return KeyStore(connect(settings)).create(owner)
    except AlgohostError as exc:
        raise click.ClickException(f"cannot create a key for {owner!r}: {exc.message}") from exc


@click.group()
def keys() -> None:
    """Manage API keys (needs access to the Redis the API uses)."""


@keys.command("create")
@click.argument("owner")
@json_option
@pass_ctx
def create(ctx: CliContext, owner: str, as_json: bool) -> None:
    """Create an API key for OWNER and print it (it is shown only this once)."""
    key = create_key(ctx.settings, owner)
    if as_json:
        emit_json({"owner": owner, "key": key})
    else:
        click.echo(key)
