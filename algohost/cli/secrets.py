"""`algohost secrets set|list|delete`: an algorithm's secrets, through the API.

A value is read from standard input or a hidden prompt, never from the command line
(argv is visible to every local user and lands in shell history), and never printed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.table import Table

from algohost.cli.common import (
    CliContext,
    emit_json,
    err,
    json_option,
    out,
    pass_ctx,
    unversioned_ref_callback,
)
from algohost.cli.render import short_time


def drop_final_newline(value: str) -> str:
    """A value as typed into a file or a pipe: one trailing newline is not part of it."""
    return value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")


def read_value() -> str:
    """The value from piped standard input (one trailing newline dropped) or a prompt."""
    stdin = sys.stdin
    if stdin.isatty():
        value = str(click.prompt("Value", hide_input=True, confirmation_prompt=True,
                                 err=True))
    else:
        value = drop_final_newline(stdin.read())
    if not value:
        raise click.UsageError("the value is empty; pipe it in or type it at the prompt")
    return value


algorithm_argument = click.argument("algorithm", callback=unversioned_ref_callback)


@click.group()
def secrets() -> None:
    """Set, list and delete an algorithm's secrets (values are never shown)."""


@secrets.command("set")
@algorithm_argument
@click.argument("name")
@json_option
@pass_ctx
def set_secret(ctx: CliContext, algorithm: str, name: str, as_json: bool) -> None:
    """Set secret NAME of ALGORITHM (owner/name); the value comes from stdin or a prompt.

    \b
      printf %s "$DB_PASSWORD" | algohost secrets set alice/reports DB_PASSWORD
      algohost secrets set alice/reports DB_PASSWORD        # asks, without echo
    """
    meta = ctx.client().set_secret(algorithm, name, read_value())
    if as_json:
        emit_json(meta)
    else:
        err.print(f"set {algorithm} {meta.get('name')} (version {meta.get('version')})")


@secrets.command("list")
@algorithm_argument
@json_option
@pass_ctx
def list_secrets(ctx: CliContext, algorithm: str, as_json: bool) -> None:
    """List the secrets of ALGORITHM: names, versions and times."""
    listed = ctx.client().secrets(algorithm)
    if as_json:
        emit_json(listed)
        return
    table = Table("name", "version", "created", "updated", box=None)
    for meta in listed:
        table.add_row(str(meta.get("name")), str(meta.get("version")),
                      short_time(meta.get("created_at")), short_time(meta.get("updated_at")))
    out.print(table if listed else f"{algorithm} has no secrets")


@secrets.command("delete")
@algorithm_argument
@click.argument("name")
@json_option
@pass_ctx
def delete_secret(ctx: CliContext, algorithm: str, name: str, as_json: bool) -> None:
    """Delete secret NAME of ALGORITHM, all its versions."""
    result = ctx.client().delete_secret(algorithm, name)
    if as_json:
        emit_json(result)
    else:
        err.print(f"deleted {algorithm} {name}")


def _write_token(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token)


@secrets.command("bootstrap")
@click.option("--tokens-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where to write vault-api.token and vault-worker.token (mode 0600).")
@pass_ctx
def bootstrap_vault(ctx: CliContext, tokens_dir: Path) -> None:
    """Set Vault up for algohost once (operators): policies, token role, service tokens.

    The root (or equivalent) token is read from standard input, never from argv.
    Tokens already in TOKENS_DIR are kept while Vault still knows them."""
    from algohost.errors import AlgohostError
    from algohost.secrets.bootstrap import bootstrap

    root = sys.stdin.readline().strip() if not sys.stdin.isatty() else str(
        click.prompt("Root token", hide_input=True, err=True))
    if not root:
        raise click.UsageError("pipe the root token in on standard input")
    api_file, worker_file = tokens_dir / "vault-api.token", tokens_dir / "vault-worker.token"
    current = {name: f.read_text().strip() if f.exists() else ""
               for name, f in (("api_token", api_file), ("worker_token", worker_file))}
    try:
        tokens = bootstrap(ctx.settings.vault_url, root, ctx.settings, **current)
    except AlgohostError as exc:
        raise click.ClickException(exc.message) from exc
    _write_token(api_file, tokens["api_token"])
    _write_token(worker_file, tokens["worker_token"])
    err.print(f"Vault at {tokens['url']} is ready: API token in {api_file}, "
              f"worker token in {worker_file}")
