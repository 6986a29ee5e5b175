"""`algohost data`: collections of files at data://OWNER/COLLECTION/PATH, both directions.

Transfers stream (never a whole file in memory) with a progress bar on a terminal;
`sync` compares sha256 digests and copies only what differs.
"""

from __future__ import annotations

import hashlib
import mimetypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from algohost.cli.client import ApiClient, save_stream
from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx
from algohost.errors import InvalidRequest
from algohost.names import DATA_SCHEME, DataUri

SCHEME = DATA_SCHEME


def split_uri(text: str) -> tuple[str, str, str]:
    """(owner, collection, path) of data://OWNER/COLLECTION[/PATH], by the API's own rules."""
    try:
        uri = DataUri.parse(text)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from exc
    return uri.owner, uri.collection, uri.path


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            hasher.update(chunk)
    return hasher.hexdigest()


class Counting:
    """A file wrapper that reports bytes read, for the progress bar of an upload."""

    def __init__(self, source: IO[bytes], advance: Any) -> None:
        self.source, self.advance = source, advance

    def read(self, size: int = -1) -> bytes:
        chunk = self.source.read(size)
        self.advance(len(chunk))
        return chunk


@contextmanager
def transfer_progress(total: int) -> Iterator[Any]:
    """An advance(n) callable; a bar on stderr when it is a terminal."""
    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        DownloadColumn(), TransferSpeedColumn(), console=err,
                        disable=not err.is_terminal)
    with progress:
        task = progress.add_task("transfer", total=total)
        yield lambda n: progress.advance(task, n)


def upload(client: ApiClient, local: Path, owner: str, collection: str, path: str,
           advance: Any) -> dict[str, Any]:
    media_type = mimetypes.guess_type(local.name)[0] or "application/octet-stream"
    with open(local, "rb") as f:
        body: Any = Counting(f, advance)
        return client.put_data(owner, collection, path, body, local.stat().st_size,
                               media_type)


def download(client: ApiClient, owner: str, collection: str, path: str, target: Path,
             digest: str | None, advance: Any) -> None:
    save_stream(client.stream(client.data_path(owner, collection, path)), target, digest,
                advance)


@click.group()
def data() -> None:
    """Files in data collections: data://OWNER/COLLECTION/PATH."""


@data.command()
@click.argument("uri")
@click.option("--access", type=click.Choice(["private", "algorithms", "public"]),
              default="private", show_default=True,
              help="Who reads it: you; also your algorithms whoever calls them; anyone.")
@json_option
@pass_ctx
def mkdir(ctx: CliContext, uri: str, access: str, as_json: bool) -> None:
    """Make the collection URI (or change its access rule)."""
    owner, collection, _ = split_uri(uri)
    made = ctx.client().make_collection(owner, collection, access)
    if as_json:
        emit_json(made)
    else:
        click.echo(f"{made['uri']} ({made['access']})")


@data.command("ls")
@click.argument("uri", required=False)
@json_option
@pass_ctx
def ls(ctx: CliContext, uri: str | None, as_json: bool) -> None:
    """List your collections, or the files of the collection URI."""
    client = ctx.client()
    if uri is None:
        found = client.collections(client.whoami())
        if as_json:
            emit_json(found)
            return
        for made in found:
            click.echo(f"{made['uri']}  {made['access']}")
        return
    owner, collection, prefix = split_uri(uri)
    listing = client.list_data(owner, collection, prefix)
    if as_json:
        emit_json(listing)
        return
    table = Table("path", "size", "sha256", "modified")
    for entry in listing["files"]:
        table.add_row(entry["path"], str(entry["size"]), entry["sha256"][:12],
                      entry["modified_at"])
    out.print(table)


@data.command()
@click.argument("source")
@click.argument("target")
@pass_ctx
def cp(ctx: CliContext, source: str, target: str) -> None:
    """Copy a file: `cp LOCAL data://...` or `cp data://... LOCAL`."""
    client = ctx.client()
    if target.startswith(SCHEME) and not source.startswith(SCHEME):
        local = Path(source)
        if not local.is_file():
            raise click.BadParameter(f"{source} is not a file (use `data sync` for directories)")
        owner, collection, path = split_uri(target)
        path = path if path and not target.endswith("/") else f"{path}/{local.name}".lstrip("/")
        with transfer_progress(local.stat().st_size) as advance:
            entry = upload(client, local, owner, collection, path, advance)
        click.echo(entry["uri"])
    elif source.startswith(SCHEME) and not target.startswith(SCHEME):
        owner, collection, path = split_uri(source)
        local = Path(target)
        if local.is_dir():
            local = local / path.rsplit("/", 1)[-1]
        listing = {f["path"]: f for f in client.list_data(owner, collection, path)["files"]}
        if path not in listing:
            raise click.ClickException(f"no file {source}")
        with transfer_progress(int(listing[path]["size"])) as advance:
            download(client, owner, collection, path, local, listing[path]["sha256"], advance)
        click.echo(str(local))
    else:
        raise click.BadParameter("exactly one of SOURCE and TARGET is a data:// URI")


@data.command()
@click.argument("uri")
@pass_ctx
def cat(ctx: CliContext, uri: str) -> None:
    """Write the file URI to standard output."""
    client = ctx.client()
    owner, collection, path = split_uri(uri)
    stdout = sys.stdout.buffer
    for chunk in client.stream(client.data_path(owner, collection, path)):
        stdout.write(chunk)
    stdout.flush()


@data.command()
@click.argument("uri")
@pass_ctx
def rm(ctx: CliContext, uri: str) -> None:
    """Remove the file URI."""
    owner, collection, path = split_uri(uri)
    click.echo(ctx.client().delete_data(owner, collection, path)["uri"])


@data.command()
@click.argument("source")
@click.argument("target")
@json_option
@pass_ctx
def sync(ctx: CliContext, source: str, target: str, as_json: bool) -> None:
    """Make TARGET hold SOURCE's files, copying only those whose sha256 differs.

    `sync DIR data://OWNER/COLLECTION[/PREFIX]` or `sync data://... DIR`."""
    client = ctx.client()
    if target.startswith(SCHEME) and not source.startswith(SCHEME):
        copied, kept = _push(client, Path(source), *split_uri(target))
    elif source.startswith(SCHEME) and not target.startswith(SCHEME):
        copied, kept = _pull(client, *split_uri(source), Path(target))
    else:
        raise click.BadParameter("exactly one of SOURCE and TARGET is a data:// URI")
    if as_json:
        emit_json({"copied": copied, "unchanged": kept})
    else:
        click.echo(f"copied {len(copied)}, unchanged {kept}")


def _remote(client: ApiClient, owner: str, collection: str, prefix: str) -> dict[str, Any]:
    listing = client.list_data(owner, collection, prefix)["files"]
    return {f["path"]: f for f in listing}


def _push(client: ApiClient, root: Path, owner: str, collection: str, prefix: str
          ) -> tuple[list[str], int]:
    if not root.is_dir():
        raise click.BadParameter(f"{root} is not a directory")
    remote = _remote(client, owner, collection, prefix)
    todo = []
    for local in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        path = "/".join(filter(None, [prefix, local.relative_to(root).as_posix()]))
        if remote.get(path, {}).get("sha256") != file_digest(local):
            todo.append((local, path))
    with transfer_progress(sum(local.stat().st_size for local, _ in todo)) as advance:
        for local, path in todo:
            upload(client, local, owner, collection, path, advance)
    return [path for _, path in todo], sum(1 for p in root.rglob("*") if p.is_file()) - len(todo)


def _pull(client: ApiClient, owner: str, collection: str, prefix: str, root: Path
          ) -> tuple[list[str], int]:
    remote = _remote(client, owner, collection, prefix)
    todo = []
    for path, entry in sorted(remote.items()):
        local = root / (path[len(prefix):].lstrip("/") if prefix else path)
        if not local.is_file() or file_digest(local) != entry["sha256"]:
            todo.append((path, entry, local))
    with transfer_progress(sum(int(e["size"]) for _, e, _ in todo)) as advance:
        for path, entry, local in todo:
            download(client, owner, collection, path, local, entry["sha256"], advance)
    return [path for path, _, _ in todo], len(remote) - len(todo)
