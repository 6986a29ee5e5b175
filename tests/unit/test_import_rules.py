"""The layers' import rules, read from the source: data flows one way, names live on the
ground floor, and the local stack's tooling stays out of the runtime packages."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "algohost"
GROUND_FLOOR = ("algohost.config", "algohost.errors", "algohost.clock", "algohost.names")

# (modules under this prefix, may not import anything under these prefixes)
RULES = [
    ("algohost.secrets", ("algohost.store", "algohost.api", "algohost.worker", "algohost.dev")),
    ("algohost.api", ("algohost.worker", "algohost.sandbox", "algohost.dev")),
    ("algohost.console", ("algohost.worker", "algohost.sandbox", "algohost.dev")),
    ("algohost.sandbox", ("algohost.store", "algohost.secrets", "algohost.api",
                          "algohost.worker", "algohost.dev")),
    ("algohost.store", ("algohost.api", "algohost.worker", "algohost.dev")),
    ("algohost.worker", ("algohost.api", "algohost.dev")),
    ("algohost.dispatch", ("algohost.api", "algohost.worker")),
]


def module_name(path: Path, root: Path = PACKAGE.parent) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module a file imports, at the top or inside a function, relative ones resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


@cache
def modules() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in PACKAGE.rglob("*.py")
            if "runner" not in path.relative_to(PACKAGE).parts}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("layer, forbidden", RULES, ids=[rule[0] for rule in RULES])
def test_a_layer_imports_nothing_from_the_layers_it_must_not_know(layer, forbidden):
    broken = sorted(f"{module} imports {name}"
                    for module, names in modules().items() if under(module, layer)
                    for name in names if any(under(name, prefix) for prefix in forbidden))
    assert broken == []


def test_the_ground_floor_imports_only_the_ground_floor():
    broken = sorted(f"{module} imports {name}"
                    for module, names in modules().items() if module in GROUND_FLOOR
                    for name in names
                    if under(name, "algohost") and not any(under(name, g) for g in GROUND_FLOOR))
    assert broken == []


def test_only_the_cli_and_the_local_stack_import_the_dev_tooling():
    broken = sorted(f"{module} imports {name}"
                    for module, names in modules().items()
                    if not under(module, "algohost.dev") and not under(module, "algohost.cli")
                    for name in names if under(name, "algohost.dev"))
    assert broken == []


def test_the_scan_sees_imports_inside_functions_and_relative_ones(tmp_path):
    source = tmp_path / "algohost" / "secrets" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from algohost.store import keys\n"
                      "from ..worker import app\n")
    found = imports_of(source, root=tmp_path)
    assert {"algohost.store.keys", "algohost.worker.app"} <= found
