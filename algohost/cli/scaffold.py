"""`algohost init NAME`: a new algorithm directory that builds, runs and passes its own test.

It never writes into a directory that exists, so nothing of the user's is overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from algohost.cli.common import err
from algohost.errors import AlgohostError
from algohost.names import validate_algorithm_name


class TargetExists(click.ClickException):
    exit_code = 3  # distinct from a usage error (2) and a failed command (1)


MANIFEST = """\
name = "{name}"
entrypoint = "main:apply"
python = "3.11"
[build]
python_packages = []           # e.g. ["numpy==2.1.*"]
system_packages = []           # apt packages, e.g. ["libpq-dev"]
[resources]
timeout_s = 30
memory_mb = 512
cpus = 1.0
network = false
[secrets]
names = []                     # e.g. ["API_TOKEN"]: read from /run/secrets/API_TOKEN
"""

FUNCTION = '''\
"""{name}: called once per input with the decoded JSON; returns something JSON-able."""


def apply(data):
    name = data.get("name", "world") if isinstance(data, dict) else "world"
    print(f"greeting {{name}}")  # prints go to the job's logs
    return {{"greeting": f"hello {{name}}"}}
'''

MODEL = '''\
"""{name}: `load()` runs once per container, before the first call; `apply` per input."""

from pathlib import Path

# A model named in [models] of algorithm.toml is mounted read-only under /models/KEY.
MODEL_PATH = Path("/models/model")
model = None


def load():
    global model
    if not MODEL_PATH.exists():
        print(f"no model at {{MODEL_PATH}}: add it under [models] in algorithm.toml; "
              "answering with the built-in fallback meanwhile")
        return
    model = MODEL_PATH.read_bytes()


def apply(data):
    if model is None:
        return {{"prediction": None, "model": "missing"}}
    return {{"prediction": len(model), "model": str(MODEL_PATH)}}
'''

FUNCTION_TEST = '''\
from main import apply


def test_apply_greets_by_name():
    assert apply({{"name": "ada"}}) == {{"greeting": "hello ada"}}
'''

MODEL_TEST = '''\
import main


def test_apply_answers_without_a_model():
    main.load()
    assert main.apply({{"x": 1}})["model"] in ("missing", str(main.MODEL_PATH))
'''

README = """\
# {name}

An algohost algorithm ({template} template).

    algohost run {name} '{{"name": "ada"}}'   # build and call it in its production image
    algohost test {name}                       # run tests/ inside that image
    algohost publish {name}                    # a new version on ALGOHOST_API_URL
"""

NOTEBOOK_MANIFEST = MANIFEST.replace('entrypoint = "main:apply"',
                                     'entrypoint = "analysis.ipynb"  # a notebook algorithm')


def _cell(cell_id: str, source: str, tags: tuple[str, ...] = ()) -> dict[str, Any]:
    metadata: dict[str, Any] = {"tags": list(tags)} if tags else {}
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": metadata,
            "outputs": [], "source": source.splitlines(keepends=True)}


def notebook(name: str) -> str:
    """nbformat 4 as JSON: the call's input replaces the `parameters` cell's defaults
    (papermill's convention) and the variable `result` is the call's output."""
    return json.dumps({
        "cells": [
            {"cell_type": "markdown", "id": "about", "metadata": {},
             "source": [f"# {name}\n", "\n",
                        "The cell tagged `parameters` holds the defaults; a call's input "
                        "overrides them. The value of `result` is the call's output."]},
            _cell("parameters", 'name = "world"  # who to greet\nrepeat = 1  # how many times\n',
                  ("parameters",)),
            _cell("compute", 'greeting = " ".join([f"hello {name}"] * int(repeat))\n'
                  "print(greeting)  # prints go to the job's logs\n"),
            _cell("result", 'result = {"greeting": greeting}\n'),
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                    "name": "python3"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }, indent=1) + "\n"


NOTEBOOK_TEST = '''\
import json
from collections.abc import Callable
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "analysis.ipynb"


def test_the_parameters_cell_is_tagged_and_holds_the_defaults():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1
    namespace = {{}}
    exec("".join(tagged[0]["source"]), namespace)
    assert namespace["name"] == "world"
'''

TEMPLATES: dict[str, dict[str, str | Callable[[str], str]]] = {
    "function": {"main.py": FUNCTION, "tests/test_main.py": FUNCTION_TEST},
    "model": {"main.py": MODEL, "tests/test_main.py": MODEL_TEST},
    "notebook": {"algorithm.toml": NOTEBOOK_MANIFEST, "analysis.ipynb": notebook,
                 "tests/test_analysis.py": NOTEBOOK_TEST},
}


def template_files(name: str, template: str) -> dict[str, str]:
    """A new algorithm's files by relative path (`algohost init` and the console's editor)."""
    files: dict[str, str | Callable[[str], str]] = {"algorithm.toml": MANIFEST, "README.md": README,
                                                  **TEMPLATES[template]}
    return {path: text(name) if callable(text) else text.format(name=name, template=template)
            for path, text in files.items()}


def write_template(target: Path, name: str, template: str) -> list[Path]:
    """Create `target` with the template's files; refuses a path that exists."""
    files = template_files(name, template)
    try:
        target.mkdir(parents=True, exist_ok=False)
    except FileExistsError as exc:
        raise TargetExists(f"{target} already exists; nothing was written") from exc
    written = []
    for relative, text in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


@click.command("init")
@click.argument("name")
@click.option("--template", type=click.Choice(sorted(TEMPLATES)), default="function",
              show_default=True, help="What the entrypoint starts from.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path),
              default=Path("."), help="Create NAME under this directory.")
def init(name: str, template: str, parent: Path) -> None:
    """Write a new algorithm directory NAME: manifest, entrypoint, tests/ and README."""
    try:
        validate_algorithm_name(name)
    except AlgohostError as exc:
        raise click.BadParameter(exc.message, param_hint="NAME") from exc
    target = parent / name
    for path in write_template(target, name, template):
        err.print(f"wrote {path}")
    err.print(f"next: algohost run {target} '{{\"name\": \"ada\"}}' && algohost test {target}")
