"""The API commands: publish, versions, call, submit, job, jobs, cancel.

Each command is a thin shell over `ApiClient`; the result goes to stdout (JSON with
--json), progress and failure details to stderr, and a failed job or build exits 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from algohost.cli.archive import pack_directory, read_name
from algohost.cli.client import BUILD_TERMINAL, ApiClient, Build, Job
from algohost.cli.common import (
    CliContext,
    PollTimeout,
    algorithm_ref_callback,
    emit_json,
    err,
    json_input_callback,
    json_option,
    out,
    parse_algorithm_ref,
    pass_ctx,
    progress,
    unversioned_ref_callback,
    wait_until,
)
from algohost.cli.render import (
    jobs_table,
    metrics_table,
    print_failure,
    print_job,
    tail,
    versions_table,
)

BUILD_LOG_TAIL = 60


class JobFailed(click.ClickException):
    exit_code = 1

    def __init__(self, job: Job) -> None:
        reason = job.reason
        suffix = f" ({reason})" if reason and reason != job.status else ""
        super().__init__(f"job {job.id} {job.status}{suffix}")
        self.job = job


class BuildFailedError(click.ClickException):
    exit_code = 1

    def __init__(self, build: Build) -> None:
        super().__init__(f"build of {build.ref} {build.status}")
        self.build = build


# -- publish ---------------------------------------------------------------------------


def start_publish(
    client: ApiClient, directory: Path, bump: str, owner: str | None = None
) -> Build:
    """Upload DIR as a new version of owner/name; the build runs on the server.

    The manifest and archive are checked before any request, so a local mistake
    never waits on the network. The owner defaults to the API key's.
    """
    name = read_name(directory)
    archive = pack_directory(directory)
    return client.publish(owner or client.whoami(), name, archive, bump)


def wait_build(client: ApiClient, build: Build, timeout_s: float) -> Build:
    """Poll the version once a second until its build succeeded or failed."""
    ref = build.ref
    owner, name, version = build.owner, build.name, build.version
    try:
        with progress(f"building {ref}") as update:
            return wait_until(
                lambda: client.version(owner, name, version),
                lambda b: b.status in BUILD_TERMINAL,
                timeout_s=timeout_s,
                interval_s=1.0,
                on_tick=lambda b, t: update(f"building {ref}: {b.status} ({t:.0f}s)"),
            )
    except PollTimeout as exc:
        raise PollTimeout(
            f"build of {ref} not finished after {timeout_s:.0f}s; it goes on: "
            f"`algohost versions {owner}/{name}`"
        ) from exc


def report_build_failure(build: Build) -> None:
    err.print(f"[red]build of {build.ref} failed[/red]: {build.error or ''}")
    logs = build.logs or ""
    if logs:
        err.rule(f"build log (last {BUILD_LOG_TAIL} lines)")
        click.echo(tail(logs, BUILD_LOG_TAIL), err=True)  # verbatim: no markup, no re-wrap


@click.command()
@click.argument("algorithm", callback=unversioned_ref_callback)
@json_option
@pass_ctx
def versions(ctx: CliContext, algorithm: str, as_json: bool) -> None:
    """List the versions of ALGORITHM (owner/name), newest first."""
    ref = parse_algorithm_ref(algorithm, allow_version=False)
    builds = ctx.client().versions(ref.owner, ref.name)
    if as_json:
        emit_json(builds)
    else:
        out.print(versions_table(builds))


# -- jobs ------------------------------------------------------------------------------


def wait_job(client: ApiClient, job: Job) -> Job:
    """Poll a job until it is terminal; Ctrl-C leaves it running and says how to resume."""
    if job.status.terminal:
        return job
    job_id = job.id
    try:
        with progress(f"job {job_id} {job.status}") as update:
            return wait_until(
                lambda: client.job(job_id),
                lambda j: j.status.terminal,
                timeout_s=None,
                first_interval_s=0.1,
                interval_s=1.0,
                on_tick=lambda j, t: update(f"job {job_id} {j.status} ({t:.0f}s)"),
            )
    except KeyboardInterrupt:
        err.print(f"stopped waiting; the job goes on: `algohost job {job_id} --wait`")
        raise SystemExit(130) from None


def finish_job(job: Job, as_json: bool, show_metrics: bool) -> None:
    """Print a terminal job for `call`: output on stdout; failure details on stderr."""
    if as_json:
        emit_json(job)
    elif job.status == "succeeded":
        emit_json(job.output)
    if show_metrics and job.metrics:
        err.print(metrics_table(job.metrics, job.warm, job.custom_metrics))
    if job.status != "succeeded":
        if not as_json:
            print_failure(err, job)
        raise JobFailed(job)


algorithm_argument = click.argument("algorithm", callback=algorithm_ref_callback)
input_argument = click.argument("payload", metavar="INPUT", callback=json_input_callback)
timeout_option = click.option(
    "--timeout", "timeout_s", type=click.IntRange(min=1), default=None,
    help="Seconds the call may run (default: the algorithm's own).",
)


@click.command()
@algorithm_argument
@input_argument
@timeout_option
@click.option("--wait", "wait_s", type=click.IntRange(0, 60, clamp=True), default=60,
              show_default=True, help="Seconds the API holds the request before we poll.")
@click.option("--metrics", "show_metrics", is_flag=True, help="Print timing metrics to stderr.")
@json_option
@pass_ctx
def call(
    ctx: CliContext,
    algorithm: str,
    payload: Any,
    timeout_s: int | None,
    wait_s: int,
    show_metrics: bool,
    as_json: bool,
) -> None:
    """Call ALGORITHM (owner/name[@version]) with INPUT (JSON, `-` for stdin, `@file`)."""
    client = ctx.client()
    job = client.submit(algorithm, payload, timeout_s=timeout_s, wait_s=wait_s)
    finish_job(wait_job(client, job), as_json, show_metrics)


@click.command()
@algorithm_argument
@input_argument
@timeout_option
@json_option
@pass_ctx
def submit(
    ctx: CliContext, algorithm: str, payload: Any, timeout_s: int | None, as_json: bool
) -> None:
    """Queue a call of ALGORITHM with INPUT and print the job id."""
    job = ctx.client().submit(algorithm, payload, timeout_s=timeout_s)
    if as_json:
        emit_json(job)
    else:
        click.echo(job.id)


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--wait", is_flag=True, help="Wait until the job has finished.")
@click.option("--download", "download_dir", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Save the job's artifacts under this directory.")
@json_option
@pass_ctx
def job(ctx: CliContext, job_id: str, wait: bool, download_dir: Path | None,
        as_json: bool) -> None:
    """Show the job ID: status, metrics, output or error, logs (and save its artifacts)."""
    client = ctx.client()
    record = client.job(job_id)
    if wait:
        record = wait_job(client, record)
    if as_json:
        emit_json(record)
    else:
        print_job(out, record)
    if download_dir is not None:
        for artifact in record.artifacts:
            target = download_dir / artifact.name
            client.download_artifact(artifact.sha256, target)
            if not as_json:
                click.echo(f"saved {target} ({artifact.size} bytes)", err=True)


@click.command()
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@json_option
@pass_ctx
def jobs(ctx: CliContext, limit: int, as_json: bool) -> None:
    """List your most recent jobs."""
    records = ctx.client().jobs(limit)
    if as_json:
        emit_json(records)
    else:
        out.print(jobs_table(records))


@click.command()
@click.argument("job_id", metavar="ID")
@json_option
@pass_ctx
def cancel(ctx: CliContext, job_id: str, as_json: bool) -> None:
    """Cancel the job ID if it has not finished."""
    record = ctx.client().cancel(job_id)
    if as_json:
        emit_json(record)
    else:
        click.echo(f"{record.id} {record.status}")


@click.command("delete")
@click.argument("ref", metavar="ALGORITHM@VERSION")
@json_option
@pass_ctx
def delete_version(ctx: CliContext, ref: str, as_json: bool) -> None:
    """Delete one version: it is never callable again, its warm containers and image go."""
    parsed = parse_algorithm_ref(ref)
    if parsed.version is None or not parsed.is_exact:
        raise click.UsageError("name an exact version: owner/name@1.2.3")
    build = ctx.client().delete_version(parsed.owner, parsed.name, parsed.version)
    if as_json:
        emit_json(build)
    else:
        click.echo(f"{build.ref} {build.status}")


API_COMMANDS = (versions, call, submit, job, jobs, cancel, delete_version)
