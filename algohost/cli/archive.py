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
from algohost.names import ENTRYPOINT

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


# Import names whose package is named otherwise; anything else is installed by its name.
PACKAGE_OF_IMPORT = {"sklearn": "scikit-learn", "PIL": "pillow", "yaml": "pyyaml",
                     "cv2": "opencv-python-headless", "bs4": "beautifulsoup4",
                     "skimage": "scikit-image"}
NOT_PACKAGES = frozenset({"algohost_runtime", "IPython", "ipykernel"})


def derived_manifest(notebook: Path) -> tuple[str, str]:
    """(file name, algorithm.toml) for a bare notebook: its name from the file's, the
    packages its cells import (not the standard library's), every other setting the
    default. The file name is the notebook's, made fit for an entrypoint."""
    import re
    import sys

    from algohost.notebooks import read_notebook
    from algohost.sandbox.runner.cells import import_statements

    try:
        nb = read_notebook(notebook.read_bytes(), notebook.name)
    except OSError as exc:
        raise click.ClickException(f"cannot read {notebook}: {exc.strerror or exc}") from exc
    except AlgohostError as exc:
        raise click.ClickException(exc.message) from exc
    name = re.sub(r"[^a-z0-9_-]+", "_", notebook.stem.lower()).strip("_-")[:63] or "notebook"
    modules = sorted({module.split(".")[0] for _, _, names in import_statements(nb.cells)
                      for module in names})
    packages = [PACKAGE_OF_IMPORT.get(m, m) for m in modules
                if m not in sys.stdlib_module_names and m not in NOT_PACKAGES]
    listed = ", ".join(f'"{p}"' for p in packages)
    file_name = notebook.name if ENTRYPOINT.matches(notebook.name) else f"{name}.ipynb"
    return file_name, (f'name = "{name}"\nentrypoint = "{file_name}"\npython = "3.11"\n\n'
                       f"[build]\npython_packages = [{listed}]\n")


def notebook_directory(notebook: Path, into: Path) -> Path:
    """A directory holding the notebook and its derived manifest, to publish as one."""
    file_name, text = derived_manifest(notebook)
    (into / file_name).write_bytes(notebook.read_bytes())
    (into / MANIFEST).write_text(text, encoding="utf-8")
    return into
