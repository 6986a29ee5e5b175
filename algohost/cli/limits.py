"""`algohost limits`: the caller's limits through the API; operators set an owner's own
limits by talking to Redis directly (like `algohost keys`)."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from algohost.cli.common import CliContext, emit_json, json_option, out, pass_ctx
from algohost.errors import AlgohostError


@click.group(invoke_without_command=True)
@json_option
@pass_ctx
@click.pass_context
def limits(click_ctx: click.Context, ctx: CliContext, as_json: bool) -> None:
    """Show your limits and their use (`set` and `reset` are for operators)."""
    if click_ctx.invoked_subcommand is not None:
        return
    report = ctx.client().limits()
    if as_json:
        emit_json(report)
        return
    table = Table("limit", "value", "in use", title=f"limits of {report['owner']}")
    usage = report["usage"]
    in_use = {"max_running": usage["running"], "max_queued": usage["running"] + usage["waiting"],
              "max_builds": usage["builds"],
              "compute_s_per_day": round(usage.get("compute_s_today", 0.0), 3)}
    for name, value in report["limits"].items():
        table.add_row(name, f"{value:g}", str(in_use.get(name, "")))
    for name, value in report["manifest"].items():
        table.add_row(f"manifest {name}", f"{value:g}", "")
    out.print(table)


def _store(ctx: CliContext) -> Any:
    # Imported here so API-only commands do not need the store's dependencies loaded.
    from algohost.store import connect
    from algohost.store.limits import LimitStore

    return LimitStore(connect(ctx.settings), ctx.settings)


@limits.command("set")
@click.argument("owner")
@click.option("--max-running", type=click.IntRange(min=1))
@click.option("--max-queued", type=click.IntRange(min=1))
@click.option("--submits-per-s", type=click.FloatRange(min=0.0),
              help="0 turns the rate limit off for this owner")
@click.option("--submit-burst", type=click.IntRange(min=1))
@click.option("--max-builds", type=click.IntRange(min=0))
@click.option("--compute-s-per-day", type=click.FloatRange(min=0.0),
              help="compute-seconds a UTC day; 0 turns the budget off for this owner")
@json_option
@pass_ctx
def set_limits(ctx: CliContext, owner: str, as_json: bool, max_running: int | None,
               max_queued: int | None, submits_per_s: float | None, submit_burst: int | None,
               max_builds: int | None, compute_s_per_day: float | None) -> None:
    """Give OWNER its own limits (the others keep the operator's defaults)."""
    values = {"max_running": max_running, "max_queued": max_queued,
              "submits_per_s": submits_per_s, "submit_burst": submit_burst,
              "max_builds": max_builds, "compute_s_per_day": compute_s_per_day}
    chosen = {name: value for name, value in values.items() if value is not None}
    if not chosen:
        raise click.UsageError("name at least one limit to set")
    try:
        result = _store(ctx).set(owner, **chosen)
    except AlgohostError as exc:
        raise click.ClickException(f"cannot set limits of {owner!r}: {exc.message}") from exc
    emit_json(result.to_dict()) if as_json else out.print(result.to_dict())


@limits.command("reset")
@click.argument("owner")
@json_option
@pass_ctx
def reset_limits(ctx: CliContext, owner: str, as_json: bool) -> None:
    """OWNER goes back to the operator's defaults."""
    try:
        result = _store(ctx).reset(owner)
    except AlgohostError as exc:
        raise click.ClickException(f"cannot reset limits of {owner!r}: {exc.message}") from exc
    emit_json(result.to_dict()) if as_json else out.print(result.to_dict())
