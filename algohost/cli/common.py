"""What every command shares: the context object, consoles, --json, argument parsing, polling.

Human output goes through rich; machine output (--json) is plain JSON on stdout.
Progress and diagnostics go to stderr so stdout stays pipeable.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import requests
from pydantic import BaseModel
from rich.console import Console

from algohost.cli.client import ApiClient
from algohost.config import Settings
from algohost.errors import InvalidRequest
from algohost.names import AlgorithmRef

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

# rich resolves sys.stdout/sys.stderr at write time, so these follow CliRunner's streams.
# Piped output (CI logs, files) gets room for whole ids instead of rich's 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


@dataclass
class CliContext:
    """Settings for this invocation and the API clients made from them."""

    settings: Settings
    # How requests travel; None: a plain requests.Session. Tests mount the app on one.
    http: requests.Session | None = None
    _clients: dict[str, ApiClient] = field(default_factory=dict)

    def client(self, api_key: str | None = None) -> ApiClient:
        key = self.settings.api_key if api_key is None else api_key
        if key not in self._clients:
            self._clients[key] = ApiClient(self.settings.api_url, key, http=self.http)
        return self._clients[key]

    @property
    def state_dir(self) -> Path:
        path = Path(self.settings.state_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path


pass_ctx = click.make_pass_decorator(CliContext)


def json_option(func: F) -> F:
    """The --json flag every command carries."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout."
    )(func)


def emit_json(value: Any) -> None:
    """Print a value, an API model (as the API sent it) or a list of them as JSON."""
    click.echo(json.dumps(_plain(value), indent=2, sort_keys=False, ensure_ascii=False))


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def parse_json_input(value: str) -> Any:
    """A JSON value given as text, `-` (read stdin) or `@path` (read a file)."""
    source, text = "the argument", value
    if value == "-":
        source, text = "standard input", sys.stdin.read()
    elif value.startswith("@"):
        path = Path(value[1:])
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"{source} is not valid JSON: {exc}") from exc


def json_input_callback(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    return parse_json_input(value)


def parse_algorithm_ref(value: str, allow_version: bool = True) -> AlgorithmRef:
    """`owner/name`, optionally with `@version`, `@latest` or a range (`@1`, `@1.2`)."""
    try:
        return AlgorithmRef.parse(value, versioned=allow_version, ranges=True)
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message) from exc


def algorithm_ref_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return str(parse_algorithm_ref(value, allow_version=True))


def unversioned_ref_callback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return str(parse_algorithm_ref(value, allow_version=False))


class PollTimeout(click.ClickException):
    """Waiting for something to reach a terminal state took longer than allowed."""


def wait_until(
    fetch: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout_s: float | None,
    interval_s: float = 1.0,
    first_interval_s: float | None = None,
    on_tick: Callable[[T, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fetch` until `done(value)`; intervals grow from `first_interval_s` to `interval_s`."""
    start = clock()
    delay = interval_s if first_interval_s is None else first_interval_s
    while True:
        value = fetch()
        elapsed = clock() - start
        if on_tick is not None:
            on_tick(value, elapsed)
        if done(value):
            return value
        if timeout_s is not None and elapsed >= timeout_s:
            raise PollTimeout(f"still not finished after {timeout_s:.0f}s")
        sleep(delay)
        delay = min(interval_s, delay * 2)


@contextmanager
def progress(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr whose text the caller updates; silent when stderr is not a terminal."""
    if not err.is_terminal:
        yield lambda _text: None
        return
    with err.status(text) as status:
        yield lambda new_text: status.update(new_text)
