"""`algohost sweep start|status|list|cancel`: start a sweep from a spec file, follow its
leaderboard live, write it as CSV.

The live view redraws progress and the best trials until the sweep ends; `--out` writes
the whole ranked table (one column per parameter) once it has.
"""

from __future__ import annotations

import csv
import json
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from algohost.cli.client import ApiClient
from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx
from algohost.cli.render import compact_json, ms, status_text, truncate
from algohost.public import Sweep, SweepTrial

POLL_S = 0.5
SHOWN = 15  # leaderboard rows in the live view; --out and --json carry them all


class SweepFailed(click.ClickException):
    exit_code = 1


def load_spec(path: Path) -> dict[str, Any]:
    """A sweep spec: JSON, or TOML when the file's name ends in .toml."""
    text = path.read_text(encoding="utf-8")
    try:
        spec = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"{path}: not a sweep spec: {exc}") from exc
    if not isinstance(spec, dict):
        raise click.ClickException(f"{path}: a sweep spec is an object")
    return spec


def param_names(sweep: Sweep) -> list[str]:
    return list(sweep.spec.get("space", {}))


def shown(value: Any) -> str:
    """A parameter's value in a cell: floats to 4 significant digits (the CSV has them all)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return truncate(compact_json(value), 16)


def leaderboard(sweep: Sweep, limit: int | None = None) -> Table:
    names = param_names(sweep)
    table = Table("#", *names, sweep.objective["key"], "status",
                  Column("job", overflow="fold"), "ms", "artifacts",
                  Column("note", overflow="fold"), title_justify="left")
    for trial in sweep.trials[:limit]:
        table.add_row(str(trial.rank or "-"),
                      *(shown(trial.params.get(n)) for n in names),
                      "-" if trial.objective is None else f"{trial.objective:.6g}",
                      status_text(trial.status.value), trial.job, ms(trial.duration_ms),
                      ", ".join(a.name for a in trial.artifacts) or "-",
                      truncate(trial.error or "", 50) if trial.error else "")
    return table


def bar(done: int, total: int, width: int = 40) -> Text:
    filled = round(width * done / total) if total else width
    return Text.assemble(("━" * filled, "green"), ("━" * (width - filled), "dim"))


def sweep_view(sweep: Sweep) -> RenderableType:
    counts = sweep.counts
    done = counts.succeeded + counts.failed
    total = done + counts.running + counts.pending
    head = Text.assemble((f"sweep {sweep.id}", "bold"), f"  {sweep.algorithm}  ",
                         status_text(sweep.status.value),
                         f"  {sweep.strategy}, {sweep.objective['direction']} "
                         f"{sweep.objective['key']}  {done}/{total} trials "
                         f"({counts.running} running, {counts.failed} failed)")
    parts: list[RenderableType] = [head, bar(done, total)]
    if sweep.best is not None:
        params = ", ".join(f"{name}={shown(value)}" for name, value in sweep.best.params.items())
        parts.append(Text(f"best: {sweep.best.objective:.6g} with {params}", style="green"))
    parts.append(leaderboard(sweep, SHOWN))
    if len(sweep.trials) > SHOWN:
        parts.append(Text(f"... {len(sweep.trials) - SHOWN} more", style="dim"))
    if sweep.reason and sweep.status.value != "running":
        parts.append(Text(f"ended: {sweep.reason}" + (f" ({sweep.message})"
                                                      if sweep.message else "")))
    return Group(*parts)


def follow(client: ApiClient, sweep_id: str, live: bool,
           sleep: Callable[[float], None] = time.sleep) -> Sweep:
    """Poll the sweep until it ends, redrawing its leaderboard when `live`."""
    sweep = client.sweep(sweep_id)
    if not live:
        while sweep.status.value == "running":
            sleep(POLL_S)
            sweep = client.sweep(sweep_id)
        return sweep
    with Live(sweep_view(sweep), console=out, refresh_per_second=4) as view:
        while sweep.status.value == "running":
            sleep(POLL_S)
            sweep = client.sweep(sweep_id)
            view.update(sweep_view(sweep))
    return sweep


def write_csv(sweep: Sweep, target: Path) -> None:
    """The ranked table: one row per trial, one column per parameter."""
    names = param_names(sweep)
    with target.open("w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink)
        writer.writerow(["rank", "trial", "status", sweep.objective["key"], *names, "job",
                         "duration_ms", "reason", "artifacts"])
        for trial in sweep.trials:
            writer.writerow(_row(trial, names))


def _row(trial: SweepTrial, names: list[str]) -> list[Any]:
    def cell(value: Any) -> Any:
        return value if isinstance(value, str | int | float) else json.dumps(value)

    return [trial.rank or "", trial.number, trial.status.value,
            "" if trial.objective is None else trial.objective,
            *(cell(trial.params.get(name)) for name in names), trial.job,
            "" if trial.duration_ms is None else trial.duration_ms, trial.reason or "",
            " ".join(a.url for a in trial.artifacts)]


def finish(sweep: Sweep, as_json: bool, shown: bool, target: Path | None) -> None:
    if target is not None:
        write_csv(sweep, target)
        err.print(f"{len(sweep.trials)} trials written to {target}")
    if as_json:
        emit_json(sweep)
    elif not shown:
        out.print(sweep_view(sweep))
    if sweep.status.value == "failed":
        raise SweepFailed(f"sweep {sweep.id} failed: {sweep.reason} ({sweep.message})")


OUT = click.option("--out", "target", type=click.Path(dir_okay=False, path_type=Path),
                   default=None, help="Write the ranked table as CSV once the sweep ends.")


@click.group()
def sweep() -> None:
    """Hyperparameter sweeps: many trials of one algorithm, ranked by an objective."""


@sweep.command("start")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--algorithm", default=None, help="Sweep this algorithm (overrides the spec's).")
@click.option("--detach", is_flag=True, help="Start the sweep and print its id only.")
@OUT
@json_option
@pass_ctx
def start_sweep(ctx: CliContext, spec_file: Path, algorithm: str | None, detach: bool,
                target: Path | None, as_json: bool) -> None:
    """Start the sweep SPEC_FILE describes (JSON, or TOML) and follow it to its end."""
    spec = load_spec(spec_file)
    if algorithm:
        spec["algorithm"] = algorithm
    client = ctx.client()
    started = client.start_sweep(spec)
    if detach:
        out.print(started.id)
        return
    err.print(f"sweep {started.id}: {started.trials_budget} trials, {started.parallelism} at "
              f"once (seed {started.seed}; `algohost sweep status {started.id}`)")
    live = not as_json and out.is_terminal
    finish(follow(client, started.id, live), as_json, live, target)


@sweep.command("status")
@click.argument("sweep_id")
@click.option("--watch", is_flag=True, help="Follow it until it ends.")
@OUT
@json_option
@pass_ctx
def sweep_status(ctx: CliContext, sweep_id: str, watch: bool, target: Path | None,
                 as_json: bool) -> None:
    """A sweep's progress and leaderboard."""
    client = ctx.client()
    live = watch and not as_json and out.is_terminal
    found = follow(client, sweep_id, live) if watch else client.sweep(sweep_id)
    finish(found, as_json, live, target)


@sweep.command("list")
@click.option("--limit", type=click.IntRange(1, 200), default=20)
@json_option
@pass_ctx
def list_sweeps(ctx: CliContext, limit: int, as_json: bool) -> None:
    """Your sweeps, newest first."""
    found = ctx.client().sweeps(limit)
    if as_json:
        emit_json(found)
        return
    table = Table("sweep", "algorithm", "status", "strategy", "objective", "trials", "created")
    for item in found:
        table.add_row(item.id, item.algorithm, status_text(item.status.value), item.strategy,
                      f"{item.objective['direction']} {item.objective['key']}",
                      str(item.trials_budget), item.created_at)
    out.print(table)


@sweep.command("cancel")
@click.argument("sweep_id")
@json_option
@pass_ctx
def cancel_sweep(ctx: CliContext, sweep_id: str, as_json: bool) -> None:
    """Cancel a running sweep; its finished trials are kept."""
    found = ctx.client().cancel_sweep(sweep_id)
    if as_json:
        emit_json(found)
    else:
        out.print(f"sweep {found.id} {found.status.value}")
