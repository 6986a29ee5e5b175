"""`algohost dev demo`: publish the examples and make the calls a new user would make.

It assumes `algohost dev up` has run; it exits non-zero when any call does not
behave as expected (the `failing` example must fail, every other call succeed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Column, Table

from algohost.cli.client import BUILD_TERMINAL, ApiClient, ApiError, Build, Job
from algohost.cli.commands import (
    BuildFailedError,
    report_build_failure,
    start_publish,
    wait_build,
    wait_job,
)
from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx
from algohost.cli.keys import create_key
from algohost.cli.models import train_example_models
from algohost.cli.pipeline import run_view
from algohost.cli.render import compact_json, error_line, mib, ms, status_text, truncate
from algohost.pipeline import load_spec_text
from algohost.public import JobMetrics, PipelineRun

DEMO_OWNER = "demo"
BUILD_TIMEOUT_S = 1800
PIPELINE_EXAMPLE = "pipeline_iris"
PIPELINE_INPUT = {"test_fraction": 0.3, "seed": 7}
PIPELINE_TIMEOUT_S = 600


@dataclass(frozen=True)
class DemoCall:
    label: str
    algorithm: str
    payload: Any
    expect_success: bool = True
    poll: bool = False  # submit, then poll, instead of a synchronous call
    download: bool = False  # save the job's artifacts (a notebook's plots) and say where


DEMO_CALLS = (
    DemoCall("hello", "hello", {"name": "world"}),
    DemoCall("pg_version", "pg_version", None),
    DemoCall("failing", "failing", {"x": 1}, expect_success=False),
    DemoCall("hello (submit + poll)", "hello", {"name": "world"}, poll=True),
    DemoCall("iris_model", "iris_model", {"features": [[5.1, 3.5, 1.4, 0.2],
                                                       [6.7, 3.0, 5.2, 2.3]]}),
    DemoCall("notebook, little noise", "notebook_regression",
             {"n": 200, "noise": 0.5, "seed": 1}, download=True),
    DemoCall("notebook, much noise", "notebook_regression",
             {"n": 50, "noise": 4.0, "seed": 2}, download=True),
)


def demo_key(ctx: CliContext) -> tuple[str, Path]:
    """Reuse STATE/demo.key while it still authenticates as `demo`; else make a new key."""
    path = ctx.state_dir / "demo.key"
    if path.is_file():
        key = path.read_text(encoding="utf-8").strip()
        if key:
            try:
                if ctx.client(key).whoami() == DEMO_OWNER:
                    return key, path
            except ApiError:
                pass  # revoked, or Redis was emptied: make a new one
    key = create_key(ctx.settings, DEMO_OWNER)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    return key, path


def example_directories(examples: Path) -> list[Path]:
    """The examples' algorithms: each directory with an algorithm.toml, and those of the
    pipeline example's steps."""
    found = sorted(d for d in examples.iterdir() if (d / "algorithm.toml").is_file())
    steps = examples / PIPELINE_EXAMPLE
    if steps.is_dir():
        found += sorted(d for d in steps.iterdir() if (d / "algorithm.toml").is_file())
    return found


def console_url(ctx: CliContext) -> str:
    return ctx.settings.api_url.rstrip("/") + "/console/"


def publish_examples(client: ApiClient, examples: Path) -> dict[str, Build]:
    """Upload every example first so builds overlap, then wait for each in turn."""
    directories = example_directories(examples)
    if not directories:
        raise click.ClickException(f"no directory with an algorithm.toml under {examples}")
    for directory in directories:  # models first: a manifest's NAME@latest must resolve
        for ref in train_example_models(client, directory):
            err.print(f"pushed model [bold]{ref}[/bold]")
    queued = [start_publish(client, d, "patch", DEMO_OWNER) for d in directories]
    builds: dict[str, Build] = {}
    for build in queued:
        if build.status not in BUILD_TERMINAL:
            build = wait_build(client, build, BUILD_TIMEOUT_S)
        if build.status != "succeeded":
            report_build_failure(build)
            raise BuildFailedError(build)
        err.print(f"published [bold]{build.ref}[/bold]")
        builds[build.name] = build
    return builds


def run_call(client: ApiClient, call: DemoCall) -> Job:
    algorithm = f"{DEMO_OWNER}/{call.algorithm}"
    if call.poll:
        return wait_job(client, client.submit(algorithm, call.payload))
    return wait_job(client, client.submit(algorithm, call.payload, wait_s=60))


def run_pipeline_example(client: ApiClient, examples: Path,
                         owner: str = DEMO_OWNER) -> PipelineRun | None:
    """Publish the iris pipeline and run it to the end (a repeated demo reuses every step)."""
    spec_file = examples / PIPELINE_EXAMPLE / "pipeline.toml"
    if not spec_file.is_file():
        return None
    spec = load_spec_text(spec_file.read_text(encoding="utf-8"), spec_file.name)
    client.publish_pipeline(owner, "iris", spec)
    run = client.start_pipeline_run(owner, "iris", PIPELINE_INPUT)
    deadline = time.monotonic() + PIPELINE_TIMEOUT_S
    while run.status.value == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        run = client.pipeline_run(run.id)
    return run


def save_artifacts(client: ApiClient, job: Job, directory: Path) -> list[Path]:
    saved = []
    for artifact in job.artifacts:
        target = directory / job.id / artifact.name
        client.download_artifact(artifact.sha256, target)
        saved.append(target)
    return saved


def notebook_report(client: ApiClient, results: list[tuple[DemoCall, Job]],
                    directory: Path) -> list[str]:
    """The notebook calls' metrics, and where their plots and executed notebooks went."""
    lines = []
    for call, job in results:
        if not call.download or job.status != "succeeded":
            continue
        output = job.output if isinstance(job.output, dict) else {}
        lines.append(f"{call.label} {compact_json(call.payload)}: r2={output.get('r2', 0):.4f} "
                     f"mse={output.get('mse', 0):.4f}")
        lines.extend(f"  saved {path}" for path in save_artifacts(client, job, directory))
    return lines


def behaved(call: DemoCall, job: Job) -> bool:
    return (job.status == "succeeded") == call.expect_success


def results_table(results: list[tuple[DemoCall, Job]]) -> Table:
    table = Table("call", Column("algorithm@version", overflow="fold"), "status",
                  Column("output", no_wrap=True), "queue_ms", "cold_start_ms", "run_ms",
                  "total_ms", "peak MiB", "as expected")
    for call, job in results:
        metrics = job.metrics or JobMetrics()
        shown = (compact_json(job.output) if job.status == "succeeded"
                 else error_line(job.error) or str(job.reason or ""))
        table.add_row(
            call.label, job.algorithm, status_text(job.status),
            truncate(shown, 40), ms(metrics.queue_ms), ms(metrics.cold_start_ms),
            ms(metrics.run_ms), ms(metrics.total_ms), mib(metrics.peak_memory_bytes),
            "[green]yes[/green]" if behaved(call, job) else "[red]NO[/red]",
        )
    return table


@click.command()
@click.option("--examples", "examples", default=Path("examples"), show_default=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Directory whose subdirectories are published.")
@json_option
@pass_ctx
def demo(ctx: CliContext, examples: Path, as_json: bool) -> None:
    """Publish the examples as `demo` and call them; needs `algohost dev up` first."""
    ctx.client().healthz()  # a clear "is `algohost dev up` running?" before anything else
    key, key_path = demo_key(ctx)
    client = ctx.client(key)
    builds = publish_examples(client, examples)
    missing = sorted({c.algorithm for c in DEMO_CALLS} - set(builds))
    if missing:
        raise click.ClickException(f"examples missing under {examples}: {', '.join(missing)}")
    results = [(call, run_call(client, call)) for call in DEMO_CALLS]
    unexpected = [call.label for call, job in results if not behaved(call, job)]
    pipeline_run = run_pipeline_example(client, examples)
    if pipeline_run is not None and pipeline_run.status.value != "succeeded":
        unexpected.append(f"pipeline {PIPELINE_EXAMPLE}")
    plots = notebook_report(client, results, ctx.state_dir / "demo-artifacts")
    if as_json:
        emit_json({"key_file": str(key_path), "console_url": console_url(ctx),
                   "builds": {name: b.ref for name, b in builds.items()},
                   "calls": [{"label": c.label, "as_expected": behaved(c, j),
                              "job": j.model_dump(mode="json", exclude_unset=True)}
                             for c, j in results],
                   "pipeline_run": None if pipeline_run is None else
                   pipeline_run.model_dump(mode="json", exclude_unset=True),
                   "ok": not unexpected})
    else:
        out.print(results_table(results))
        for call, job in results:
            if not call.expect_success and job.error:
                out.print(f"{call.label} failed as expected: {error_line(job.error)}")
        if pipeline_run is not None:
            out.print(run_view(pipeline_run))
        for line in plots:
            out.print(line, highlight=False)
        out.print(f"API key for owner {DEMO_OWNER!r}: {key_path}")
        out.print(f"  export ALGOHOST_API_KEY=$(cat {key_path})", highlight=False)
        out.print(f"Web console: {console_url(ctx)}  (sign in with this key: {key})",
                  highlight=False)
    if unexpected:
        raise click.ClickException(f"not as expected: {', '.join(unexpected)}")
