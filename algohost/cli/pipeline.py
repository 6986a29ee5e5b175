"""`algohost pipeline publish|run|status`: publish a spec file, start a run, watch its graph.

The live view redraws the run's steps (in an order they can run in, each with what it
needs) until the run finishes; the exit code says whether it succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Column, Table
from rich.text import Text

from algohost.cli.client import ApiClient
from algohost.cli.common import (
    CliContext,
    emit_json,
    err,
    json_input_callback,
    json_option,
    out,
    pass_ctx,
)
from algohost.cli.render import compact_json, ms, short_time, status_text, truncate
from algohost.errors import AlgohostError
from algohost.names import OWNER, PIPELINE_NAME
from algohost.pipeline import load_spec_text, parse_spec
from algohost.public import PipelineRun, PipelineStep

POLL_S = 0.5
STEP_STYLE = {"pending": "dim", "skipped": "yellow"}


class RunFailed(click.ClickException):
    exit_code = 1


def split_name(client: ApiClient, text: str) -> tuple[str, str]:
    """`owner/name`, or `name` of the caller's own."""
    owner, _, name = text.rpartition("/")
    owner = owner or client.whoami()
    for grammar, value in ((OWNER, owner), (PIPELINE_NAME, name)):
        if not grammar.matches(value):
            raise click.BadParameter(f"{grammar.what} is {grammar.rule}; got {value!r}")
    return owner, name


def stages(order: list[str], needs: dict[str, list[str]]) -> str:
    """The graph on one line: steps that can run side by side share a stage (a | b)."""
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[need] for need in needs.get(name, [])), default=-1)
    grouped: dict[int, list[str]] = {}
    for name in order:
        grouped.setdefault(depth[name], []).append(name)
    return " -> ".join(" | ".join(names) for _, names in sorted(grouped.items()))


def step_status(step: PipelineStep) -> Text:
    label = "cached" if step.cached else step.status.value
    return Text(label, style="green dim" if step.cached else
                STEP_STYLE.get(step.status.value, status_text(step.status.value).style))


def graph_table(run: PipelineRun) -> Table:
    table = Table("step", "needs", "status", Column("job", overflow="fold"), "ms",
                  "artifacts", Column("note", overflow="fold"), title_justify="left")
    for step in run.steps:
        note = ""
        if step.error is not None:
            note = truncate(f"{step.error.type}: {step.error.message}", 60)
        elif step.cached:
            note = f"reused {step.cache_source}"
        table.add_row(step.name, ", ".join(step.needs) or "-", step_status(step),
                      step.job_id or "-", ms(step.duration_ms),
                      ", ".join(a.name for a in step.artifacts) or "-", note)
    return table


def run_view(run: PipelineRun) -> RenderableType:
    done = sum(step.status.terminal for step in run.steps)
    head = Text.assemble((f"run {run.id}", "bold"), f"  {run.pipeline} v{run.version}  ",
                         status_text(run.status.value), f"  {done}/{len(run.steps)} steps")
    parts: list[RenderableType] = [head, graph_table(run)]
    if run.failed_step is not None and run.error is not None:
        parts.append(Text(f"step {run.failed_step!r} failed: {run.error.message}", style="red"))
    if run.status.value == "succeeded":
        parts.append(Text("output: " + truncate(compact_json(run.output), 400)))
    return Group(*parts)


def follow(client: ApiClient, run_id: str, live: bool,
           sleep: Callable[[float], None] = time.sleep) -> PipelineRun:
    """Poll the run until it finishes, redrawing its graph when `live`; Ctrl-C stops
    following (the run goes on)."""
    try:
        return _follow(client, run_id, live, sleep)
    except KeyboardInterrupt:
        err.print(f"stopped following; the run goes on: `algohost pipeline status {run_id} "
                  "--watch`")
        raise SystemExit(130) from None


def _follow(client: ApiClient, run_id: str, live: bool,
            sleep: Callable[[float], None]) -> PipelineRun:
    run = client.pipeline_run(run_id)
    if not live:
        while run.status.value == "running":
            sleep(POLL_S)
            run = client.pipeline_run(run_id)
        return run
    with Live(run_view(run), console=out, refresh_per_second=4, transient=False) as view:
        while run.status.value == "running":
            sleep(POLL_S)
            run = client.pipeline_run(run_id)
            view.update(run_view(run))
    return run


def finish(run: PipelineRun, as_json: bool, shown: bool) -> None:
    if as_json:
        emit_json(run)
    elif not shown:
        out.print(run_view(run))
    if run.status.value == "failed":
        raise RunFailed(f"pipeline run {run.id} failed at step {run.failed_step!r}"
                        if run.failed_step else f"pipeline run {run.id} failed ({run.reason})")


@click.group()
def pipeline() -> None:
    """Pipelines: steps that call algorithms, wired output to input."""


@pipeline.command("publish")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("name")
@json_option
@pass_ctx
def publish_pipeline(ctx: CliContext, spec_file: Path, name: str, as_json: bool) -> None:
    """Publish SPEC_FILE (TOML or JSON) as the next version of pipeline NAME."""
    try:
        spec = load_spec_text(spec_file.read_text(encoding="utf-8"), spec_file.name)
        parse_spec(spec)  # the API checks it again; a mistake is shown before any request
    except AlgohostError as exc:
        raise click.ClickException(f"{spec_file}: {exc.message}") from exc
    client = ctx.client()
    owner, name = split_name(client, name)
    version, created = client.publish_pipeline(owner, name, spec)
    if as_json:
        emit_json(version)
        return
    what = "published" if created else "unchanged, still"
    out.print(f"{what} [bold]{owner}/{name}[/bold] version {version.version}: "
              + stages(version.order, version.needs))


@pipeline.command("run")
@click.argument("name")
@click.option("--input", "payload", default="null", callback=json_input_callback,
              help="The run's input: JSON, or @FILE.")
@click.option("--version", "version", type=click.IntRange(min=1), default=None,
              help="Run this version (default: the latest).")
@click.option("--no-cache", is_flag=True, help="Run every step; reuse nothing.")
@click.option("--detach", is_flag=True, help="Start the run and print its id only.")
@json_option
@pass_ctx
def run_pipeline(ctx: CliContext, name: str, payload: Any, version: int | None,
                 no_cache: bool, detach: bool, as_json: bool) -> None:
    """Start a run of pipeline NAME and show its graph live until it finishes."""
    client = ctx.client()
    owner, name = split_name(client, name)
    run = client.start_pipeline_run(owner, name, payload, version=version, cache=not no_cache)
    if detach:
        if as_json:
            emit_json(run)
        else:
            out.print(run.id)
        return
    err.print(f"run {run.id} started (follow it with `algohost pipeline status {run.id} "
              "--watch`)")
    live = not as_json and out.is_terminal
    finish(follow(client, run.id, live), as_json, live)


@pipeline.command("status")
@click.argument("run_id")
@click.option("--watch", is_flag=True, help="Redraw until the run finishes.")
@json_option
@pass_ctx
def pipeline_status(ctx: CliContext, run_id: str, watch: bool, as_json: bool) -> None:
    """Show a run's graph: each step's status, job, time and artifacts."""
    client = ctx.client()
    if not watch:
        run = client.pipeline_run(run_id)
        if as_json:
            emit_json(run)
        else:
            out.print(run_view(run))
        return
    live = not as_json and out.is_terminal
    finish(follow(client, run_id, live), as_json, live)


@pipeline.command("runs")
@click.argument("name", required=False)
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@json_option
@pass_ctx
def pipeline_runs(ctx: CliContext, name: str | None, limit: int, as_json: bool) -> None:
    """Your pipeline runs, newest first (of pipeline NAME only, if given)."""
    listing = ctx.client().pipeline_runs(name, limit)
    if as_json:
        emit_json(listing)
        return
    table = Table("run", "pipeline", "status", "steps", "cached", "failed step", "started")
    for run in listing.runs:
        table.add_row(run.id, f"{run.pipeline} v{run.version}", status_text(run.status.value),
                      f"{run.finished_steps}/{run.steps}", str(run.cached_steps),
                      run.failed_step or "-", short_time(run.created_at))
    out.print(table)


@pipeline.command("cancel")
@click.argument("run_id")
@json_option
@pass_ctx
def cancel_pipeline_run(ctx: CliContext, run_id: str, as_json: bool) -> None:
    """Cancel a running pipeline run: steps under way are canceled, the rest never start."""
    run = ctx.client().cancel_pipeline_run(run_id)
    if as_json:
        emit_json(run)
    else:
        out.print(run_view(run))


@pipeline.command("list")
@json_option
@pass_ctx
def list_pipelines(ctx: CliContext, as_json: bool) -> None:
    """Your pipelines, each at its latest version, with its graph in stages."""
    listing = ctx.client().pipelines()
    if as_json:
        emit_json(listing)
        return
    table = Table("pipeline", "version", Column("steps", overflow="fold"), "published")
    for version in listing.pipelines:
        table.add_row(f"{version.owner}/{version.name}", str(version.version),
                      stages(version.order, version.needs), short_time(version.created_at))
    out.print(table)
