"""The real API for the command line's tests, with no server, broker or Docker.

The Flask app runs on a real Redis behind a `requests` transport, so the CLI's own
client speaks HTTP to it as to a deployed API. What the API enqueues runs in this
process through the worker's own BuildRunner, JobRunner and ChunkRunner; the stub
sandbox runs the published `main.py`. A change to the public job model fails the CLI
tests, as it would fail a user.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis
import requests
from click.testing import CliRunner, Result
from flask import Flask
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from algohost.api import create_app
from algohost.cli.common import CliContext
from algohost.cli.main import cli
from algohost.config import Settings
from algohost.errors import BuildFailed
from algohost.sandbox.pool import WarmPool
from algohost.sandbox.stub import StubSandbox
from algohost.secrets import MemorySecrets, VaultSecretSource
from algohost.store import connect, connect_raw
from algohost.store.batch_metering import BatchMetering
from algohost.store.batches import BatchStore
from algohost.store.build_leases import BuildLeases
from algohost.store.fairshare import FairShare
from algohost.store.jobs import JobStore
from algohost.store.keys import KeyStore
from algohost.store.limits import LimitStore
from algohost.store.pipelines import PipelineStore
from algohost.store.registry import Registry
from algohost.store.usage import ComputeBudget, UsageLedger
from algohost.submission import JobSubmitter
from algohost.worker.batching import ChunkRunner
from algohost.worker.building import BuildRunner
from algohost.worker.execution import JobRunner
from algohost.worker.metering import FinishHook
from algohost.worker.pipelines import PipelineHook, Scheduler

API_URL = "http://algohost.test"


class FlaskTransport(BaseAdapter):
    """Sends a `requests` request to a Flask app through its test client; keeps each one."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.client = app.test_client()
        self.seen: list[requests.PreparedRequest] = []
        self.after: Callable[[requests.PreparedRequest], None] = lambda request: None

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        self.seen.append(request)
        url = urlsplit(request.url or "")
        body = request.body.encode() if isinstance(request.body, str) else request.body
        reply = self.client.open(url.path, method=request.method, query_string=url.query,
                                 headers=list(request.headers.items()), data=body or b"")
        response = requests.Response()
        response.status_code = reply.status_code
        response.reason = HTTPStatus(reply.status_code).phrase
        response.headers = CaseInsensitiveDict(dict(reply.headers))
        response._content = reply.get_data()
        response.raw = io.BytesIO(response._content)  # for a reply the client streams
        response.encoding = "utf-8"
        response.url, response.request = request.url or "", request
        self.after(request)
        return response

    def close(self) -> None:
        pass


class SourceBuilder:
    """A build that loads the published entrypoint into the stub sandbox instead of an image."""

    def __init__(self, sandbox: StubSandbox) -> None:
        self.sandbox = sandbox
        self.fail_with: list[str] | None = None  # log lines of a build that is to fail

    def build(self, build_id: str, tag: str, source_files: dict[str, bytes],
              manifest: Any, on_log: Callable[[str], None], *, owner: str) -> str:
        if self.fail_with is not None:
            for line in self.fail_with:
                on_log(line)
            raise BuildFailed("the build step failed")
        module, _, function = manifest.entrypoint.partition(":")
        namespace: dict[str, Any] = {}
        exec(compile(source_files[f"{module}.py"], f"{module}.py", "exec"), namespace)
        self.sandbox.algorithms[build_id] = namespace[function]
        on_log(f"loaded {module}.py")
        return f"sha256:{build_id}"


class InlineWorker:
    """The API's dispatcher: runs each build, job and chunk at once, in this process,
    unless `hold` is set; then it waits for `release()`."""

    def __init__(self, settings: Settings, secrets: MemorySecrets) -> None:
        client = connect(settings)
        self.registry = Registry(client, connect_raw(settings))
        self.sandbox = StubSandbox({})
        self.builder = SourceBuilder(self.sandbox)
        self.pool = WarmPool(self.sandbox, settings.sandbox)
        source = VaultSecretSource(secrets)
        self.builds = BuildRunner(self.registry, self.builder, settings, BuildLeases(client))
        jobs = JobStore(client, settings.job_retention_s)
        limits = LimitStore(client, settings)
        fair = FairShare(client, limits, self.enqueue_run, JobStore.key(""))
        budget = ComputeBudget(UsageLedger.from_settings(client, settings), limits)
        self.pipelines = Scheduler(PipelineStore(client, settings.job_retention_s), jobs,
                                   self.registry, JobSubmitter(jobs, fair, self.enqueue_run,
                                                               settings.max_timeout_s, budget),
                                   settings.lease_s)
        self.jobs = JobRunner(jobs, self.registry, self.pool, settings, "cli-test",
                              secrets=source,
                              hooks=[FinishHook.from_settings(client, settings, fair),
                                     PipelineHook(self.pipelines.advance, self.enqueue_pipeline)])
        self.chunks = ChunkRunner(BatchStore(client, settings.job_retention_s), self.registry,
                                  self.pool, source, lease_s=settings.lease_s,
                                  metering=BatchMetering.from_settings(settings))
        self.hold = False
        self.pending: list[Callable[[], None]] = []
        self.batches: list[str] = []
        self.webhooks: list[tuple[str, int, int, float]] = []

    def _do(self, work: Callable[[], None]) -> None:
        if self.hold:
            self.pending.append(work)
        else:
            work()

    def release(self) -> None:
        self.hold = False
        while self.pending:
            self.pending.pop(0)()

    def enqueue_build(self, build_id: str) -> None:
        self._do(lambda: self.builds.run(build_id))

    def enqueue_run(self, job_id: str, priority: int = 0) -> None:
        self._do(lambda: self.jobs.run(job_id))

    def run_message(self, job_id: str) -> str | None:
        return None  # runs in this process: enqueue_run sends every job

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None:
        self.batches.append(batch_id)
        for start, stop in chunks:
            self._do(lambda start=start, stop=stop: self.chunks.run(batch_id, start, stop))

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None:
        self.webhooks.append((delivery_id, generation, attempt, countdown_s))

    def retire_build(self, build_id: str) -> None:
        self.pool.close_build(build_id)

    def enqueue_pipeline(self, run_id: str) -> None:
        self._do(lambda: self.pipelines.advance(run_id))


class CliApi:
    """One owner's view: `run` invokes the command line against the app."""

    def __init__(self, redis_client: redis.Redis, redis_url: str, state_dir: Path,
                 owner: str = "alice") -> None:
        self.settings = Settings(redis_url=redis_url, api_url=API_URL, state_dir=str(state_dir))
        self.secrets = MemorySecrets()
        self.worker = InlineWorker(self.settings, self.secrets)
        self.app = create_app(self.settings, dispatcher=self.worker, docker_ping=lambda: True,
                              secrets=self.secrets)
        self.transport = FlaskTransport(self.app)
        self.owner, self.key = owner, KeyStore(redis_client).create(owner)

    def run(self, args: list[str], *, key: str | None = None, stdin: str | None = None,
            url: str = API_URL) -> Result:
        http = requests.Session()
        http.mount(API_URL, self.transport)
        settings = self.settings.with_overrides(api_url=url,
                                                api_key=self.key if key is None else key)
        return CliRunner().invoke(cli, args, obj=CliContext(settings, http=http), input=stdin)

    def requests_to(self, method: str, path: str) -> list[requests.PreparedRequest]:
        return [r for r in self.transport.seen
                if r.method == method and urlsplit(r.url or "").path == path]

    def publish(self, directory: Path) -> str:
        """Publish through the command line; returns the version's reference."""
        result = self.run(["publish", str(directory)])
        assert result.exit_code == 0, result.output
        self.transport.seen.clear()  # what a test looks at starts after its setup
        return result.stdout.strip()


def algorithm_dir(root: Path, name: str, body: str) -> Path:
    """A tiny algorithm: `apply(x)` with the given body."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "algorithm.toml").write_text(f'name = "{name}"\nentrypoint = "main:apply"\n')
    (directory / "main.py").write_text(f"def apply(x):\n    {body}\n")
    return directory
