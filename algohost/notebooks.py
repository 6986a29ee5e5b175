"""Notebook algorithms at publish and call time: validation, parameters, their JSON schema.

A notebook is read and validated with nbformat when it is published; its cell tagged
`parameters` (papermill's convention) is inspected into typed `Parameter`s stored with the
version. A call's input is checked against them before it is queued. Nothing here runs a
notebook: that is the in-container runner's business (sandbox/runner/notebook.py).
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from dataclasses import asdict, dataclass
from typing import Any

import nbformat

from algohost.errors import InvalidNotebook, InvalidParameter, UnknownParameter
from algohost.sandbox.runner import protocol

# JSON schema type of a Python literal; bool before int, since bool is an int.
_TYPES: tuple[tuple[type, str], ...] = ((bool, "boolean"), (int, "integer"), (float, "number"),
                                        (str, "string"), (list, "array"), (tuple, "array"),
                                        (dict, "object"))
_ANNOTATIONS = {"bool": "boolean", "int": "integer", "float": "number", "str": "string",
                "list": "array", "dict": "object"}


@dataclass(frozen=True)
class Parameter:
    """One assignment of the parameters cell: `name = default  # help`."""

    name: str
    default: Any = None  # JSON-able, or None when the default is not a literal
    type: str | None = None  # a JSON schema type, when the default or annotation says
    help: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Parameter:
        return Parameter(name=data["name"], default=data.get("default"),
                         type=data.get("type"), help=data.get("help", ""))


def is_notebook_entrypoint(entrypoint: str) -> bool:
    return entrypoint.endswith(protocol.NOTEBOOK_SUFFIX)


def read_notebook(data: bytes, name: str) -> Any:
    """The notebook as nbformat reads it (v4), or InvalidNotebook with nbformat's message
    and the index of the cell it points at."""
    try:
        # The validation error is captured (else nbformat logs it) and raised below.
        nb = nbformat.reads(data.decode("utf-8"), as_version=4,  # type: ignore[no-untyped-call]
                            capture_validation_error={})
    except UnicodeDecodeError as exc:
        raise InvalidNotebook(f"{name} is not UTF-8 text", notebook=name) from exc
    except Exception as exc:  # nbformat raises NotJSONError, ValueError, KeyError...
        raise InvalidNotebook(f"{name} is not a notebook nbformat can read: {exc}",
                              notebook=name) from exc
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        path = list(exc.absolute_path)
        cell = path[1] if len(path) > 1 and path[0] == "cells" and isinstance(path[1], int) \
            else None
        where = f" (cell {cell})" if cell is not None else ""
        raise InvalidNotebook(f"{name} does not validate{where}: {exc.message}",
                              notebook=name, cell=cell) from exc
    return nb


def parameters_cell(nb: Any) -> tuple[int, str] | None:
    for index, cell in enumerate(nb.cells):
        if protocol.PARAMETERS_TAG in (cell.get("metadata", {}).get("tags") or []):
            return index, str(cell.source)
    return None


def inspect_parameters(nb: Any, name: str) -> list[Parameter]:
    """The parameters cell's top-level assignments, in order; [] without such a cell."""
    found = parameters_cell(nb)
    if found is None:
        return []
    index, source = found
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise InvalidNotebook(f"{name}: the cell tagged 'parameters' (cell {index}) is not "
                              f"Python: {exc.msg} (line {exc.lineno})", notebook=name,
                              cell=index) from exc
    comments = _comments(source)
    params: dict[str, Parameter] = {}
    for node in tree.body:
        target, annotation, value = _assignment(node)
        if target is None:
            continue
        default, kind = _literal(value)
        if annotation is not None:
            kind = _ANNOTATIONS.get(annotation, kind)
        help_text = comments.get(node.end_lineno or node.lineno, "")
        params[target] = Parameter(target, default, kind, help_text)
    return list(params.values())


def _assignment(node: ast.stmt) -> tuple[str | None, str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, None, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        annotation = node.annotation.id if isinstance(node.annotation, ast.Name) else None
        return node.target.id, annotation, node.value
    return None, None, None


def _literal(node: ast.expr | None) -> tuple[Any, str | None]:
    if node is None:
        return None, None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None, None
    if value is None:
        return None, None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return None, None
    kind = next((name for py, name in _TYPES if isinstance(value, py)), None)
    return (list(value) if isinstance(value, tuple) else value), kind


def _comments(source: str) -> dict[int, str]:
    """A line's trailing comment, by line number: the help of the parameter on it."""
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


def json_schema(params: list[Parameter]) -> dict[str, Any]:
    """The parameters as the JSON schema of a call's input."""
    properties: dict[str, Any] = {}
    for param in params:
        prop: dict[str, Any] = {}
        if param.type is not None:
            # An integer default takes a float too: `noise = 1` is a number to most people.
            prop["type"] = ["integer", "number"] if param.type == "number" else param.type
        if param.default is not None:
            prop["default"] = param.default
        if param.help:
            prop["description"] = param.help
        properties[param.name] = prop
    return {"type": "object", "properties": properties, "additionalProperties": False}


def check_call_input(params: list[Parameter], payload: Any) -> None:
    """Refuse an input that is not an object of known parameters of the right types."""
    if payload is None:
        return
    if not isinstance(payload, dict):
        raise InvalidParameter("a notebook's input is a JSON object of its parameters, not "
                               f"{_json_type(payload)}", known=[p.name for p in params])
    known = {p.name: p for p in params}
    unknown = sorted(set(payload) - known.keys())
    if unknown:
        listed = ", ".join(known) or "none"
        raise UnknownParameter(f"unknown parameter{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(unknown)}; the notebook's parameters are: {listed}",
                               unknown=unknown, known=list(known))
    for name, value in payload.items():
        expected = known[name].type
        if expected is None or value is None:
            continue
        got = _json_type(value)
        if got != expected and not (expected == "number" and got == "integer"):
            raise InvalidParameter(f"parameter {name} is {expected} (its default is "
                                   f"{json.dumps(known[name].default)}); got {got}",
                                   parameter=name, expected=expected, got=got)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for py, name in _TYPES if isinstance(value, py)), "object")
