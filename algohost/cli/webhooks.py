"""`algohost webhooks secret|deliveries|redeliver`: the signing key and what was delivered.

The signing key goes to stdout only, so it can be piped into a receiver's configuration;
ids starting with b_ are batches, any other id a job.
"""

from __future__ import annotations

import click
from rich.table import Column, Table
from rich.text import Text

from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx
from algohost.cli.render import ms, short_time, truncate
from algohost.public import Delivery

STATE_STYLE = {"delivered": "green", "dead": "red", "pending": "yellow"}


def deliveries_table(deliveries: list[Delivery]) -> Table:
    table = Table(Column("delivery", no_wrap=True), "event", "state", Column("attempt at",
                  no_wrap=True), "status", "ms", "error")
    for delivery in deliveries:
        state = Text(delivery.state, style=STATE_STYLE.get(delivery.state, ""))
        if not delivery.attempts:
            table.add_row(delivery.id, delivery.event, state, "-", "-", "-", "")
        for n, attempt in enumerate(delivery.attempts):
            first = n == 0
            table.add_row(delivery.id if first else "", delivery.event if first else "",
                          state if first else "", short_time(attempt.at),
                          str(attempt.status_code or "-"), ms(attempt.latency_ms),
                          truncate(attempt.error or "", 60))
        if delivery.next_attempt_at and delivery.state == "pending":
            table.add_row("", "", "", f"next {short_time(delivery.next_attempt_at)}", "", "",
                          "")
    return table


@click.group()
def webhooks() -> None:
    """Webhook signing key and deliveries."""


@webhooks.command()
@click.option("--rotate", is_flag=True, help="Replace the key; receivers must get the new one.")
@json_option
@pass_ctx
def secret(ctx: CliContext, rotate: bool, as_json: bool) -> None:
    """Print your signing key (whsec_...), made on first use."""
    value = ctx.client().webhook_secret(rotate=rotate)
    if as_json:
        emit_json({"secret": value})
    else:
        click.echo(value)
    if rotate and not as_json:
        err.print("rotated: attempts from now on are signed with this key")


@webhooks.command()
@click.argument("subject_id", metavar="ID")
@json_option
@pass_ctx
def deliveries(ctx: CliContext, subject_id: str, as_json: bool) -> None:
    """List the webhook deliveries of job or batch ID, with every attempt."""
    found = ctx.client().deliveries(subject_id)
    if as_json:
        emit_json(found)
    elif not found:
        err.print(f"{subject_id} has no webhook deliveries")
    else:
        out.print(deliveries_table(found))


@webhooks.command()
@click.argument("subject_id", metavar="ID")
@click.option("--delivery", "delivery_id", default=None,
              help="Which delivery (default: the latest dead one, else the latest).")
@json_option
@pass_ctx
def redeliver(ctx: CliContext, subject_id: str, delivery_id: str | None, as_json: bool) -> None:
    """Send a delivery of job or batch ID again, from the start of the schedule."""
    delivery = ctx.client().redeliver(subject_id, delivery_id)
    if as_json:
        emit_json(delivery)
    else:
        click.echo(f"{delivery.id} {delivery.event} {delivery.state}")
