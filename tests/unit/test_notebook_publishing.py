"""Notebooks at publish time: nbformat's validation, papermill-style parameters, their schema,
the call's input checked against them, and what a notebook's image is made of."""

import json
import tomllib
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from algohost.cli.archive import derived_manifest
from algohost.config import SandboxSettings
from algohost.errors import InvalidNotebook, InvalidParameter, UnknownParameter
from algohost.manifest import loads_manifest
from algohost.notebooks import (
    Parameter,
    check_call_input,
    inspect_parameters,
    json_schema,
    read_notebook,
)
from algohost.sandbox.buildplan import NOTEBOOK_PACKAGES, plan

ROOT = Path(__file__).resolve().parents[2]


def notebook(*sources, tags=None):
    nb = new_notebook()
    nb.cells = [new_code_cell(source) for source in sources]
    for index, tag in (tags or {}).items():
        nb.cells[index].metadata["tags"] = [tag]
    return nb


def as_bytes(nb):
    return nbformat.writes(nb).encode()


def test_parameters_are_named_typed_and_helped_by_their_comments():
    nb = notebook("import math", 'n = 100  # points to draw\nnoise: float = 1\nname = "x"\n'
                  "flags = [1, 2]\nopts = {'a': True}\nfast = False\nf = math.pi\nnone = None",
                  tags={1: "parameters"})
    params = inspect_parameters(read_notebook(as_bytes(nb), "a.ipynb"), "a.ipynb")
    assert params == [
        Parameter("n", 100, "integer", "points to draw"),
        Parameter("noise", 1, "number", ""),
        Parameter("name", "x", "string", ""),
        Parameter("flags", [1, 2], "array", ""),
        Parameter("opts", {"a": True}, "object", ""),
        Parameter("fast", False, "boolean", ""),
        Parameter("f", None, None, ""),  # not a literal: no default, no type
        Parameter("none", None, None, ""),
    ]


def test_a_notebook_without_a_parameters_cell_has_none():
    assert inspect_parameters(notebook("x = 1"), "a.ipynb") == []


def test_a_parameters_cell_that_is_not_python_is_refused_naming_it():
    with pytest.raises(InvalidNotebook) as caught:
        inspect_parameters(notebook("import os", "x = = 1", tags={1: "parameters"}), "a.ipynb")
    assert caught.value.details["cell"] == 1


def test_nbformat_refusal_names_its_message_and_the_cell():
    nb = json.loads(as_bytes(notebook("a = 1", "b = 2")))
    del nb["cells"][1]["outputs"]
    with pytest.raises(InvalidNotebook) as caught:
        read_notebook(json.dumps(nb).encode(), "a.ipynb")
    assert caught.value.details["cell"] == 1
    assert "'outputs' is a required property" in caught.value.message
    with pytest.raises(InvalidNotebook):
        read_notebook(b"{not json", "a.ipynb")


def test_the_schema_lists_parameters_in_order_and_refuses_others():
    schema = json_schema([Parameter("n", 3, "integer", "how many"),
                          Parameter("rate", 0.5, "number")])
    assert schema == {"type": "object", "additionalProperties": False, "properties": {
        "n": {"type": "integer", "default": 3, "description": "how many"},
        "rate": {"type": ["integer", "number"], "default": 0.5}}}


def test_a_call_input_is_checked_against_the_parameters():
    params = [Parameter("n", 3, "integer"), Parameter("rate", 0.5, "number"),
              Parameter("any", None, None)]
    check_call_input(params, {"n": 4, "rate": 1, "any": [1]})
    check_call_input(params, None)
    with pytest.raises(UnknownParameter) as unknown:
        check_call_input(params, {"n": 1, "colour": "red"})
    assert unknown.value.details == {"unknown": ["colour"], "known": ["n", "rate", "any"]}
    with pytest.raises(InvalidParameter):
        check_call_input(params, {"n": 1.5})
    with pytest.raises(InvalidParameter):
        check_call_input(params, {"n": True})
    with pytest.raises(InvalidParameter):
        check_call_input(params, [1, 2])


def test_the_image_gets_the_notebook_runner_packages_pinned_as_the_api_has_them():
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(NOTEBOOK_PACKAGES) <= set(pins)
    manifest = loads_manifest('name = "nb"\nentrypoint = "a.ipynb"\n')
    steps = plan(manifest, {"a.ipynb": b"{}"}, SandboxSettings())
    assert any(step.argv[-len(NOTEBOOK_PACKAGES):] == NOTEBOOK_PACKAGES for step in steps)
    files = [path for step in steps for path, _ in step.files]
    assert "/opt/algohost/notebook.py" in files
    function = plan(loads_manifest('name = "f"\nentrypoint = "m:f"\n'), {"m.py": b""},
                    SandboxSettings())
    assert not any("notebook" in step.title for step in function)
    assert "/opt/algohost/notebook.py" not in [p for s in function for p, _ in s.files]


def test_a_bare_notebook_gets_a_manifest_with_the_packages_it_imports(tmp_path):
    path = tmp_path / "My Analysis.ipynb"
    path.write_bytes(as_bytes(notebook("import numpy as np\nfrom sklearn import linear_model\n"
                                       "import os, json\n%matplotlib inline\n"
                                       "import matplotlib.pyplot as plt")))
    file_name, text = derived_manifest(path)
    manifest = loads_manifest(text)
    assert (manifest.name, manifest.entrypoint) == ("my_analysis", "my_analysis.ipynb")
    assert file_name == "my_analysis.ipynb"
    assert manifest.build.python_packages == ["matplotlib", "numpy", "scikit-learn"]


def test_the_demo_prints_the_notebook_metrics_and_where_it_saved_the_plots(tmp_path):
    from algohost.dev.demo import DEMO_CALLS, notebook_report
    from algohost.public import Job

    class Saving:
        def __init__(self):
            self.saved = []

        def download_artifact(self, sha256, target):
            self.saved.append((sha256, target))

    calls = [c for c in DEMO_CALLS if c.algorithm == "notebook_regression"]
    assert len(calls) == 2 and calls[0].payload != calls[1].payload
    job = Job.model_validate({
        "id": "j_1", "algorithm": "demo/notebook_regression@0.1.0",
        "requested": "demo/notebook_regression", "status": "succeeded", "reason": "succeeded",
        "output": {"r2": 0.98765, "mse": 0.25}, "error": None, "logs": "",
        "created_at": "", "started_at": None, "finished_at": None, "warm": True,
        "timeout_s": 60, "attempts": 1, "metrics": None,
        "artifacts": [{"name": "images/cell5-1.png", "sha256": "ab" * 32, "size": 3,
                       "media_type": "image/png", "url": "/v1/artifacts/" + "ab" * 32}]})
    client = Saving()
    lines = notebook_report(client, [(calls[0], job)], tmp_path)
    assert "r2=0.9877 mse=0.2500" in lines[0]
    assert lines[1] == f"  saved {tmp_path / 'j_1' / 'images' / 'cell5-1.png'}"
    assert client.saved == [("ab" * 32, tmp_path / "j_1" / "images" / "cell5-1.png")]
