"""How deeply a JSON value that algohost stores may nest: one limit for the API (inputs) and
the worker (outputs), so whatever is stored can be rendered again, in replies and webhooks.

Imports nothing of algohost; counting never recurses, whatever the depth.
"""

from __future__ import annotations

from typing import Any

# Far more than real data needs, far less than what renderers survive (pydantic stops
# near 255 levels, json near the interpreter's recursion limit).
MAX_JSON_DEPTH = 100


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest in a JSON value (a scalar is 0)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list | tuple):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in item)
    return deepest
