"""`algohost run DIR --watch`: one warm container, called again on each save.

A change to the code is sent to the running container, whose runner imports it in place
of the old (no build, no cold start); a change to algorithm.toml or to the requirements
file builds again (cached dependency layers make that quick unless [build] changed) and
starts a new container, as does any change to a notebook algorithm. Each result says how
long it came after the save.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from algohost.cli.archive import MANIFEST
from algohost.cli.common import err
from algohost.cli.local import (
    LocalAlgorithm,
    call_session,
    ensure_image,
    read_algorithm,
    read_models,
    read_secrets,
    start_failure,
    start_session,
)
from algohost.cli.localruns import LocalRuns
from algohost.cli.render import metrics_table, print_failure
from algohost.clock import now_iso
from algohost.config import SandboxSettings
from algohost.errors import ContainerStartFailed
from algohost.public import Job
from algohost.sandbox.buildplan import is_notebook
from algohost.sandbox.docker import DockerSession

if TYPE_CHECKING:
    from algohost.cli.local import Inputs

POLL_S = 0.1  # how often the directory is looked at: a save shows within this


def snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    """(mtime, size) of every file: cheap to take ten times a second."""
    found = {}
    for path in directory.rglob("*"):
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__"
                                      for part in path.relative_to(directory).parts):
            stat = path.stat()
            found[str(path)] = (stat.st_mtime_ns, stat.st_size)
    return found


def recipe(algorithm: LocalAlgorithm) -> tuple[str, bytes]:
    """What the image is built from besides the code: a change here means a build."""
    manifest = algorithm.manifest
    requirements = manifest.build.requirements
    extra = algorithm.files.get(str(requirements), b"") if requirements else b""
    return json.dumps(manifest.to_dict(), sort_keys=True), extra


@contextmanager
def interrupted_by_sigterm() -> Iterator[None]:
    """SIGTERM ends the watch as Ctrl-C does, so the container is removed either way."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Watcher:
    def __init__(self, directory: Path, max_bytes: int, settings: SandboxSettings,
                 client: Any, runs: LocalRuns, inputs: Inputs) -> None:
        self.directory, self.max_bytes = directory, max_bytes
        self.settings, self.client, self.runs, self.inputs = settings, client, runs, inputs
        self.algorithm: LocalAlgorithm | None = None
        self.session: DockerSession | None = None
        self.secrets: dict[str, str] = {}

    def run(self) -> None:
        err.print(f"watching {self.directory}; Ctrl-C ends")
        seen = snapshot(self.directory)
        with interrupted_by_sigterm():
            try:
                self.changed(None)
                while True:
                    time.sleep(POLL_S)  # polling the directory is the watch itself
                    now = snapshot(self.directory)
                    if now != seen:
                        saved = max((now[p][0] for p in now if now[p] != seen.get(p)),
                                    default=time.time_ns()) / 1e9
                        seen = now
                        self.changed(saved)
            except KeyboardInterrupt:
                err.print("stopped watching")
            finally:
                self.stop()

    def stop(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def changed(self, saved_at: float | None) -> None:
        """Bring the container up to the directory's content and call it once."""
        try:
            algorithm = read_algorithm(self.directory, self.max_bytes)
            secrets = read_secrets(self.inputs.secret_values, algorithm.manifest)
            mounts = read_models(self.inputs.model_values, algorithm.manifest)
        except click.ClickException as exc:
            err.print(f"[red]{exc.format_message()}[/red]; waiting for the next save")
            return
        previous, self.algorithm = self.algorithm, algorithm
        if (previous is not None and previous.content_hash == algorithm.content_hash
                and self.session is not None and self.session.alive):
            return  # saved without a change
        cold_start_ms, logs = 0.0, ""
        try:
            # A notebook's kernel runs the cells it started with: it takes a new container.
            if (previous is None or self.session is None or not self.session.alive
                    or recipe(previous) != recipe(algorithm) or is_notebook(algorithm.manifest)):
                if previous is not None:
                    err.print(f"{MANIFEST} or the requirements changed: building again"
                              if self.session is not None else "starting a new container")
                self.stop()
                ensure_image(algorithm, self.settings, self.client)
                started = start_session(algorithm, self.settings, self.client, secrets, mounts)
                if isinstance(started, Job):
                    return self.show(started, saved_at)
                self.session, self.secrets = started, secrets
                cold_start_ms, logs = started.cold_start_ms, started.startup_logs
            else:
                reloaded_ms = self.session.reload(algorithm.files)
                err.print(f"reloaded the code in the warm container ({reloaded_ms:.0f} ms)")
        except ContainerStartFailed as exc:
            return self.show(start_failure(algorithm, now_iso(), exc, list(secrets.values())),
                             saved_at)
        except click.ClickException as exc:  # a failed build: its log was printed
            err.print(f"[red]{exc.format_message()}[/red]; waiting for the next save")
            return
        assert self.session is not None
        job = call_session(algorithm, self.session, self.inputs.payload, self.secrets,
                           cold_start_ms, logs)
        if not self.session.alive:
            self.session = None  # it timed out or crashed: the next save starts another
        if job.status == "succeeded":
            self.runs.record(self.directory, algorithm.content_hash)
        self.show(job, saved_at)

    def show(self, job: Job, saved_at: float | None) -> None:
        """The output on one stdout line per run; the rest on stderr."""
        if job.status == "succeeded":
            click.echo(json.dumps(job.output, ensure_ascii=False), nl=True)
            if job.logs:
                err.rule("logs")
                click.echo(job.logs.rstrip("\n"), err=True)
        else:
            print_failure(err, job)
            err.print(f"[red]{job.status}[/red] ({job.reason})")
        if job.metrics:
            err.print(metrics_table(job.metrics, job.warm))
        if saved_at is not None:  # the first run has no save to count from
            err.print(f"save-to-result {(time.time() - saved_at) * 1000:.0f} ms")
        err.print("waiting for the next save")
