"""`algohost gc`: delete artifact blobs nothing references, past their grace period.

An operator command: it talks to Redis and the blob store directly, as workers do.
"""

from __future__ import annotations

import click

from algohost.cli.common import CliContext, emit_json, json_option, pass_ctx
from algohost.errors import AlgohostError


@click.command("gc")
@click.option("--grace-s", type=float, default=None,
              help="Keep blobs unreferenced for less than this many seconds "
                   "(default: ALGOHOST_ARTIFACT_GC_GRACE_S)")
@json_option
@pass_ctx
def gc(ctx: CliContext, grace_s: float | None, as_json: bool) -> None:
    """Delete unreferenced artifact blobs and report the bytes freed."""
    from algohost.artifacts.gc import collect_garbage  # the store's dependencies, only here

    try:
        report = collect_garbage(ctx.settings, grace_s)
    except AlgohostError as exc:
        raise click.ClickException(f"garbage collection failed: {exc.message}") from exc
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"examined {report.examined} blobs, deleted {report.deleted}, "
               f"freed {report.bytes_freed} bytes")
