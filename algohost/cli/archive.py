"""What `publish` uploads: the validated manifest's name and the directory's tar.gz.

Packing and manifest rules live in `algohost.archive` and `algohost.manifest`, shared
with the API; this module only turns their errors into click errors before any upload.
"""

from __future__ import annotations

from pathlib import Path

import click

from algohost.archive import make_archive
from algohost.errors import AlgohostError
from algohost.manifest import loads_manifest

MANIFEST = "algorithm.toml"


def read_name(directory: Path) -> str:
    """The `name` of DIR/algorithm.toml, checked by the same rules the API applies."""
    path = directory / MANIFEST
    try:
        return loads_manifest(path.read_text(encoding="utf-8")).name
    except FileNotFoundError as exc:
        raise click.ClickException(f"{path} does not exist") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror or exc}") from exc
    except AlgohostError as exc:
        raise click.ClickException(f"{path}: {exc.message}") from exc


def pack_directory(directory: Path) -> bytes:
    """Deterministic tar.gz of DIR without .git, __pycache__, .venv and *.pyc."""
    try:
        return make_archive(directory)
    except AlgohostError as exc:
        raise click.ClickException(exc.message) from exc
