"""`algohost egress install|show`: the networks and host firewall rules that fence tenants.

Run on every worker host, as root, before the workers start (`dev up` does it). It
changes only algohost's own networks and chains, so it is safe to run again.
"""

from __future__ import annotations

import click

from algohost.cli.common import CliContext, emit_json, json_option, out, pass_ctx
from algohost.config import SandboxSettings
from algohost.errors import AlgohostError


def install(settings: SandboxSettings) -> list[str]:
    """Create the calls and builds networks and install the rules; the networks created."""
    # Imported here: only the commands that manage the host need docker-py.
    from algohost.sandbox import egress
    from algohost.sandbox.docker import docker_client

    try:
        created = egress.ensure_networks(docker_client(settings), settings)
        egress.install_rules(settings)
    except AlgohostError as exc:
        raise click.ClickException(f"egress: {exc.message}") from exc
    return created


@click.group()
def egress() -> None:
    """The networks networked calls and builds join, and the firewall around them."""


@egress.command("install")
@json_option
@pass_ctx
def install_command(ctx: CliContext, as_json: bool) -> None:
    """Create the networks and install the egress rules (idempotent; needs root)."""
    settings = ctx.settings.sandbox
    created = install(settings)
    if as_json:
        emit_json({"networks": [settings.calls_network, settings.builds_network],
                   "created": created})
        return
    for name in (settings.calls_network, settings.builds_network):
        out.print(f"network {name}: {'created' if name in created else 'present'}")
    out.print("egress rules installed (see `algohost egress show`)")


@egress.command()
def show() -> None:
    """Print the installed rules: the jumps into algohost's chains, then the chains."""
    from algohost.sandbox.egress import installed_rules

    click.echo(installed_rules(), nl=False)
