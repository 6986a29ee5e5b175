"""`algohost models`: push a model file or directory once, list what is pushed.

The content is hashed here first, so pushing the same content again uploads nothing;
a directory travels as a deterministic tar, so the same tree keeps the same digest.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click
from rich.table import Table

from algohost.artifacts.models import DIRECTORY, FILE, TAR_MEDIA_TYPE, pack_directory
from algohost.cli.client import ApiClient
from algohost.cli.common import CliContext, emit_json, err, json_option, out, pass_ctx

CHUNK = 1024 * 1024


def digest_of(stream: IO[bytes]) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    while chunk := stream.read(CHUNK):
        hasher.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return hasher.hexdigest(), size


@contextmanager
def model_content(path: Path) -> Iterator[tuple[IO[bytes], str, str]]:
    """(content, kind, media type) of a model file or directory, ready to read."""
    if path.is_dir():
        with tempfile.TemporaryFile(prefix="algohost-model-") as packed:
            pack_directory(path, packed)
            packed.seek(0)
            yield packed, DIRECTORY, TAR_MEDIA_TYPE
    else:
        with open(path, "rb") as f:
            yield f, FILE, "application/octet-stream"


def push_model(client: ApiClient, name: str, path: Path) -> tuple[dict[str, Any], int]:
    """Push PATH as model NAME; (its version, bytes uploaded: 0 when already there)."""
    owner = client.whoami()
    with model_content(path) as (content, kind, media_type):
        digest, size = digest_of(content)
        uploaded = not client.has_artifact(digest)
        if uploaded:
            client.upload_artifact(content, path.name, size, media_type)
    return client.push_model(owner, name, digest, kind, path.name), size if uploaded else 0


def train_example_models(client: ApiClient, example: Path) -> list[str]:
    """An example with a train.py trains its models into a scratch directory (one file
    per model, named after it) and pushes them; the refs pushed."""
    trainer = example / "train.py"
    if not trainer.is_file():
        return []
    with tempfile.TemporaryDirectory(prefix="algohost-train-") as scratch:
        subprocess.run([sys.executable, str(trainer), scratch], check=True,
                       stdout=subprocess.DEVNULL)
        return [push_model(client, made.stem, made)[0]["ref"]
                for made in sorted(Path(scratch).iterdir())]


@click.group()
def models() -> None:
    """Push models and list them; attach one with [models] in algorithm.toml."""


@models.command("push")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@json_option
@pass_ctx
def push(ctx: CliContext, name: str, path: Path, as_json: bool) -> None:
    """Upload PATH (a file or a directory) as the latest version of model NAME."""
    version, uploaded = push_model(ctx.client(), name, path)
    if as_json:
        emit_json({**version, "uploaded_bytes": uploaded})
        return
    err.print(f"uploaded {uploaded} bytes" if uploaded else "already uploaded; nothing sent")
    click.echo(version["ref"])


@models.command("ls")
@json_option
@pass_ctx
def ls(ctx: CliContext, as_json: bool) -> None:
    """List your models with their latest version."""
    found = ctx.client().models()
    if as_json:
        emit_json(found)
        return
    table = Table("model", "latest", "kind", "size", "versions", "pushed at")
    for model in found:
        latest = model.get("latest") or {}
        table.add_row(model["name"], f"sha256:{str(latest.get('sha256', ''))[:12]}",
                      str(latest.get("kind", "")), str(latest.get("size", "")),
                      str(len(model.get("versions", []))), str(latest.get("pushed_at", "")))
    out.print(table)
