"""The `algohost` entry point: one click group holding every command.

Settings are read once here, through `load_settings`, and handed down in the
click context; no command reads the environment itself.
"""

from __future__ import annotations

import click

from algohost.cli.batch import batch
from algohost.cli.catalogue import CATALOGUE_COMMANDS
from algohost.cli.commands import API_COMMANDS
from algohost.cli.common import CliContext
from algohost.cli.data import data
from algohost.cli.egress import egress
from algohost.cli.gc import gc
from algohost.cli.keys import keys
from algohost.cli.limits import limits
from algohost.cli.local import LOCAL_COMMANDS
from algohost.cli.metering import METERING_COMMANDS
from algohost.cli.models import models
from algohost.cli.pipeline import pipeline
from algohost.cli.prune import prune
from algohost.cli.publishing import publish
from algohost.cli.scaffold import init
from algohost.cli.secrets import secrets
from algohost.cli.sweep import sweep
from algohost.cli.webhooks import webhooks
from algohost.config import load_settings
from algohost.dev.commands import dev


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="algohost")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Publish algorithms and call them through the algohost API.

    Configuration comes from ALGOHOST_* environment variables, chiefly
    ALGOHOST_API_URL and ALGOHOST_API_KEY.
    """
    if ctx.obj is None:  # tests pass their own CliContext
        try:
            ctx.obj = CliContext(load_settings())
        except ValueError as exc:
            raise click.ClickException(f"bad configuration: {exc}") from exc


for command in (publish, *API_COMMANDS, *CATALOGUE_COMMANDS, *LOCAL_COMMANDS, init, batch, webhooks,
                secrets, keys, limits, dev, egress, prune, gc, models, data, pipeline, sweep):
    cli.add_command(command)
for command in METERING_COMMANDS:
    cli.add_command(command)
