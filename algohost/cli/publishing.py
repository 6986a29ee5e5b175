"""`algohost publish`: a directory or a git commit becomes a new version, built on the server.

What the command line knows of the source travels with it as metadata: the content hash
that last ran locally (so the version says whether the platform built that) and, for
`--git`, the commit and its ref.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import requests

from algohost.cli.archive import MANIFEST, notebook_directory, pack_directory, read_name
from algohost.cli.client import BUILD_TERMINAL, ApiClient, Build
from algohost.cli.commands import BuildFailedError, report_build_failure, wait_build
from algohost.cli.common import CliContext, emit_json, err, json_option, pass_ctx
from algohost.cli.gitsource import read_git_source
from algohost.cli.localruns import LocalRuns


def report_local_match(build: Build, directory: Path | None) -> None:
    if build.matches_local is True:
        err.print(f"{build.ref} is the source that last ran locally "
                  f"(content hash {build.local_hash and build.local_hash[:16]})")
    elif build.matches_local is False:
        err.print(f"[yellow]{build.ref} is not the source that last ran locally: "
                  f"`algohost run {directory}` or `algohost test {directory}` checks it"
                  "[/yellow]")
    elif directory is not None:
        err.print(f"no local run of {directory} recorded: `algohost run` or `algohost test` "
                  "it first to have the version say it matches")


def stream_build(client: ApiClient, build: Build) -> Build | None:
    """Print the build log as it is written, until the build ends; the finished build, or
    None when the stream broke off (the caller then polls)."""
    try:
        for event, data in client.build_log_events(build.owner, build.name, build.version):
            if event == "end":
                return client.version(build.owner, build.name, build.version)
            if event == "message":
                click.echo(data, err=True)  # verbatim: no markup
    except (click.ClickException, requests.RequestException) as exc:
        message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
        err.print(f"the build log stream ended early ({message}); waiting for the build")
    return None


def bare_notebook(path: Path, into: Path) -> Path:
    """A directory to publish for a notebook without an algorithm.toml; says what it derived."""
    if path.suffix != ".ipynb":
        raise click.BadParameter(f"{path} is a file but not a notebook (.ipynb): publish a "
                                 "directory with an algorithm.toml, or a notebook")
    directory = notebook_directory(path, into)
    err.print(f"{path.name} has no algorithm.toml: publishing it with this derived one "
              "(defaults for everything else; write your own beside it to change them):")
    click.echo((directory / MANIFEST).read_text(encoding="utf-8").rstrip(), err=True)
    return directory



@click.command()
@click.argument("directory", metavar="[DIR_OR_NOTEBOOK]", required=False, default=None,
                type=click.Path(exists=True, path_type=Path))
@click.option("--git", "git_location", metavar="PATH_OR_URL", default=None,
              help="Publish a commit of this git repository instead of a directory.")
@click.option("--ref", default=None, help="With --git: the branch, tag or commit (HEAD).")
@click.option("--subdir", default=".", show_default=True,
              help="With --git: the algorithm's directory inside the repository.")
@click.option("--bump", type=click.Choice(["patch", "minor", "major"]), default="patch",
              show_default=True, help="Which part of the version to increase.")
@click.option("--no-wait", is_flag=True, help="Return once the build is queued.")
@click.option("--quiet", "-q", is_flag=True, help="Do not print the build log as it builds.")
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), default=1800,
              show_default=True, help="Seconds to wait for the build.")
@json_option
@pass_ctx
def publish(ctx: CliContext, directory: Path | None, git_location: str | None, ref: str | None,
            subdir: str, bump: str, no_wait: bool, quiet: bool, timeout_s: int,
            as_json: bool) -> None:
    """Publish DIR (with an algorithm.toml), a bare NOTEBOOK.ipynb, or a commit with --git, as
    a new version and wait for its build. Publishing the same content (the same commit) again
    returns its version."""
    if (directory is None) == (git_location is None):
        raise click.UsageError("give DIR or --git PATH_OR_URL, not both or neither")
    if git_location is None and (ref is not None or subdir != "."):
        raise click.UsageError("--ref and --subdir go with --git")
    origin: dict[str, str] = {}
    local: Path | None
    if git_location is not None:
        source = read_git_source(git_location, ref, subdir)
        name, archive, local = source.name, source.archive, source.directory
        origin.update(git_commit=source.commit, git_ref=source.ref)
    elif directory is not None and directory.is_file():
        with tempfile.TemporaryDirectory(prefix="algohost-notebook-") as tmp:
            derived = bare_notebook(directory, Path(tmp))
            name, archive, local = read_name(derived), pack_directory(derived), None
    else:
        assert directory is not None
        name, archive, local = read_name(directory), pack_directory(directory), directory
    ran = LocalRuns(ctx.settings.state_dir).last(local) if local is not None else None
    if ran:
        origin["local_hash"] = ran
    client = ctx.client()
    build = client.publish(client.whoami(), name, archive, bump, origin)
    streamed = False
    if not no_wait and build.status not in BUILD_TERMINAL:
        finished = None if quiet else stream_build(client, build)
        streamed = finished is not None
        build = finished or wait_build(client, build, timeout_s)
    if as_json:
        emit_json(build)
    elif build.status != "failed":
        click.echo(build.ref)
        report_local_match(build, local)
    if build.status == "failed":
        if streamed:  # its log is on the screen already
            err.print(f"[red]build of {build.ref} failed[/red]: {build.error or ''}")
        elif not as_json:
            report_build_failure(build)
        raise BuildFailedError(build)
    if no_wait and not as_json:
        err.print(f"build {build.id} {build.status}")
