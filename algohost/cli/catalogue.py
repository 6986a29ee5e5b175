"""The catalogue commands: describe a reference, yank a version, share an algorithm, search.

Thin shells over `ApiClient`, like the other API commands: results to stdout (JSON with
--json), and the API's own errors for anything refused.
"""

from __future__ import annotations

import click

from algohost.cli.common import (
    CliContext,
    algorithm_ref_callback,
    emit_json,
    json_option,
    out,
    parse_algorithm_ref,
    pass_ctx,
    unversioned_ref_callback,
)
from algohost.cli.render import catalogue_table, parameter_lines


@click.command()
@click.argument("algorithm", callback=algorithm_ref_callback)
@json_option
@pass_ctx
def describe(ctx: CliContext, algorithm: str, as_json: bool) -> None:
    """Show the version ALGORITHM resolves to: owner/name[@1.2.3|@1.2|@1|@latest]; for a
    notebook, the parameters a call may set."""
    ref = parse_algorithm_ref(algorithm)
    build = ctx.client().version(ref.owner, ref.name, ref.version or "latest")
    if as_json:
        emit_json(build)
        return
    out.print(f"{build.ref} {build.status}{' (yanked)' if build.yanked else ''}")
    if build.royalty_micros:
        out.print(f"royalty: {build.royalty_micros} micros per call")
    for line in parameter_lines(build):  # plain lines, never re-wrapped
        click.echo(line)


def _exact(ref_text: str) -> tuple[str, str, str]:
    ref = parse_algorithm_ref(ref_text)
    if ref.version is None or not ref.is_exact:
        raise click.UsageError("name an exact version: owner/name@1.2.3")
    return ref.owner, ref.name, ref.version


@click.command()
@click.argument("ref", metavar="ALGORITHM@VERSION")
@click.option("--undo", is_flag=True, help="Unyank: ranges and @latest may pick it again.")
@json_option
@pass_ctx
def yank(ctx: CliContext, ref: str, undo: bool, as_json: bool) -> None:
    """Hide one version from ranges and @latest; exact references still call it."""
    build = ctx.client().yank(*_exact(ref), undo=undo)
    if as_json:
        emit_json(build)
    else:
        out.print(f"{build.ref} {'yanked' if build.yanked else 'listed'}")


@click.command()
@click.argument("algorithm", callback=unversioned_ref_callback)
@click.argument("visibility", type=click.Choice(["public", "private"]))
@json_option
@pass_ctx
def visibility(ctx: CliContext, algorithm: str, visibility: str, as_json: bool) -> None:
    """Make ALGORITHM (owner/name) public (listed, callable by every key) or private."""
    ref = parse_algorithm_ref(algorithm, allow_version=False)
    summary = ctx.client().set_visibility(ref.owner, ref.name, visibility)
    if as_json:
        emit_json(summary)
    else:
        out.print(f"{summary.owner}/{summary.name} {summary.visibility}")


@click.command()
@click.argument("word", required=False)
@json_option
@pass_ctx
def search(ctx: CliContext, word: str | None, as_json: bool) -> None:
    """Public algorithms whose name, description or parameters mention WORD (any case)."""
    found = ctx.client().search(word)
    if as_json:
        emit_json(found)
    else:
        out.print(catalogue_table(found))


CATALOGUE_COMMANDS = (describe, yank, visibility, search)
