"""What a notebook's cells import: read by the notebook runner to warm its kernel once, and by
the command line to derive a bare notebook's packages.

Standard library only (copied into a notebook algorithm's image beside the runner).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any


def import_statements(cells: Iterable[Any]) -> list[tuple[int, str, list[str]]]:
    """(cell index, statement, modules) of each top-level absolute import of a code cell."""
    found = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(source)
        # Magics and shell lines are IPython's, not Python's: blanked for the parse.
        lines = ["" if line.lstrip().startswith(("%", "!")) else line
                 for line in source.splitlines()]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                found.append((index, ast.unparse(node), [alias.name for alias in node.names]))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.append((index, ast.unparse(node), [node.module]))
    return found
