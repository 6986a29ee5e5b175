"""The web console, served by the API process under /console: pages rendered on the server
from the API's own views and reply models, a bundled editor, no build step at run time.

It never holds an API key after sign-in and never shows a secret's value.
"""

from __future__ import annotations

from algohost.console import (  # noqa: F401 - they register the pages
    batches,
    editor,
    flows,
    manage,
    metrics,
    pages,
    session,
    sweeps,
)
from algohost.console.blueprint import bp as console

__all__ = ["console"]
