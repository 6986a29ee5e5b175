"""A real algohost stack for integration tests: a Celery worker process on its own
Redis database, the Flask app under its test client, and helpers to publish and call.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import docker
import redis
from werkzeug.serving import make_server

from algohost.api import create_app
from algohost.archive import make_archive
from algohost.config import Settings, load_settings
from algohost.dev.openbao import ensure_dev_server, find_bao, stop_dev_server
from algohost.dispatch import QUEUES, CeleryDispatcher, make_celery
from algohost.store.keys import KeyStore
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TEST_ALGORITHMS = ROOT / "tests" / "algorithms"
STACK_REDIS_URL = os.environ.get("ALGOHOST_TEST_STACK_REDIS_URL", "redis://127.0.0.1:6379/13")
# A second stack (the warm-pool tests) flushes its own database: by default the one next
# to STACK_REDIS_URL's, on the same server, so runs on separate servers never meet.
POOL_REDIS_URL = os.environ.get("ALGOHOST_TEST_POOL_REDIS_URL",
                                urlsplit(STACK_REDIS_URL)._replace(path="/10").geturl())
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def stack_environment(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALGOHOST_")}
    env.update({
        "ALGOHOST_REDIS_URL": STACK_REDIS_URL,
        "ALGOHOST_STATE_DIR": str(tmp),
        "ALGOHOST_EXTRA_CA_BUNDLE": os.environ.get(
            "ALGOHOST_EXTRA_CA_BUNDLE", CA_BUNDLE if Path(CA_BUNDLE).exists() else ""),
        "ALGOHOST_LEASE_S": "30",
        # Webhook receivers in the tests listen on 127.0.0.1, and must not wait minutes.
        "ALGOHOST_WEBHOOK_ALLOW_PRIVATE": "1",
        "ALGOHOST_WEBHOOK_SCHEDULE_S": "0.5,1,2",
        "ALGOHOST_BATCH_CHUNK_SIZE": "50",
    })
    env.update(extra)
    return env


def start_vault(state_dir: Path, address: str) -> dict[str, str]:
    """The stack's own OpenBao dev server; no vault settings when `bao` is missing."""
    if find_bao() is None:
        return {}
    info = ensure_dev_server(state_dir, address, log=lambda line: None)
    return {"ALGOHOST_VAULT_URL": info["url"],
            "ALGOHOST_VAULT_TOKEN_FILE": info["api_token_file"],
            "ALGOHOST_VAULT_WORKER_TOKEN_FILE": info["worker_token_file"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    def __init__(self, tmp: Path, owner: str = "alice", node: str = "test",
                 **extra_env: str) -> None:
        # Stacks in one test run keep apart by owner (their images) and by node
        # name (the worker id that labels their containers).
        self.owner, self.node = owner, f"{node}-{os.getpid()}"
        self.vault_dir, self.vault_address = tmp / "openbao", f"127.0.0.1:{free_port()}"
        self.vault_env = start_vault(self.vault_dir, self.vault_address)
        self.env = stack_environment(tmp, **self.vault_env, **extra_env)
        self.settings: Settings = load_settings(self.env)
        self.redis = redis.Redis.from_url(self.settings.redis_url, decode_responses=True)
        self.redis.flushdb()
        self.log_path = tmp / "worker.log"
        self.worker: subprocess.Popen[bytes] | None = None
        # Messages a SIGKILLed worker held: they stay in the broker's `unacked` until its
        # visibility timeout (an hour); the job records, not the broker, bring their work back.
        self.abandoned: set[bytes] = set()
        self.app = create_app(self.settings,
                              dispatcher=CeleryDispatcher(make_celery(self.settings)))
        self.client = self.app.test_client()
        keys = KeyStore(self.redis)
        self.key, self.other_key = keys.create(owner), keys.create(f"{owner}-other")
        self.auth = {"Authorization": f"Bearer {self.key}"}
        self.docker = docker.DockerClient(base_url=self.settings.sandbox.docker_url)

    def start_worker(self, concurrency: int = 4) -> None:
        command = [sys.executable, "-m", "celery", "-A", "algohost.worker.app:celery", "worker",
                   "-P", "threads", "-c", str(concurrency), "-Q", ",".join(QUEUES),
                   "-n", f"{self.node}@%h", "--loglevel", "INFO", "--without-heartbeat",
                   "--without-mingle", "--without-gossip"]
        with open(self.log_path, "ab") as log:
            self.worker = subprocess.Popen(command, env=self.env, stdout=log, stderr=log,
                                           cwd=ROOT, start_new_session=True)

    def kill_worker(self) -> None:
        """SIGKILL the worker, as a lost host would, and note the messages it held."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(10)
        broker = redis.Redis.from_url(self.settings.broker)
        try:
            self.abandoned |= set(broker.hkeys("unacked"))
        finally:
            broker.close()

    def stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(30)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait(10)

    def worker_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop_worker()
        stop_dev_server(self.vault_dir)
        for image in self._build_images():
            if any(tag.startswith(f"algohost/{self.owner}/") for tag in image.tags):
                for tag in image.tags:
                    try:
                        self.docker.images.remove(tag, force=True)
                    except docker.errors.APIError:
                        pass
        self.redis.flushdb()

    def _build_images(self) -> list[Any]:
        # Another run may remove an image while the engine lists it (a 404 mid-listing).
        def listed() -> tuple[list[Any]] | None:  # a tuple: an empty listing is an answer
            try:
                return (list(self.docker.images.list(filters={"label": "algohost.build"})),)
            except docker.errors.NotFound:
                return None

        return eventually(listed, 30, "a listing of the build images")[0]

    @contextmanager
    def serving(self) -> Iterator[str]:
        """The API over real HTTP on 127.0.0.1 (for the command line); yields its URL."""
        server = make_server("127.0.0.1", 0, self.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            thread.join()

    def post_job(self, ref: str, payload: Any, wait: int = 0, **extra: Any) -> dict[str, Any]:
        headers = dict(self.auth)
        if wait:
            headers["Prefer"] = f"wait={wait}"
        response = self.client.post("/v1/jobs", json={"algorithm": ref, "input": payload, **extra},
                                    headers=headers)
        assert response.status_code in (200, 202), response.get_json()
        return dict(response.get_json())

    def wait(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        """The job once it is terminal."""
        return self.wait_for_job(job_id, lambda job: job["status"] not in ("queued", "running"),
                                 timeout_s, "to finish")

    def read(self, path: str) -> dict[str, Any]:
        """GET `path` as this stack's owner; it must answer 200."""
        response = self.client.get(path, headers=self.auth)
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def until_not_running(self, path: str, timeout_s: float = 240) -> dict[str, Any]:
        """The record at `path` once its status has left `running` (a run, a sweep)."""
        def done() -> dict[str, Any] | None:
            record = self.read(path)
            return record if record["status"] != "running" else None

        return eventually(done, timeout_s, lambda: f"{path} to finish: {self.worker_log()}")

    def wait_for_job(self, job_id: str, done: Any, timeout_s: float = 120,
                     what: str = "") -> dict[str, Any]:
        """The job's record once `done(record)` holds."""
        def ready() -> dict[str, Any] | None:
            job = self.get_job(job_id)
            return job if done(job) else None

        return eventually(ready, timeout_s, lambda: f"job {job_id} {what}: {self.worker_log()}")

    def broker_idle(self) -> bool:
        """No message queued, scheduled or being worked on (late acks keep each one in
        `unacked` until its task ends): after this, nothing more happens by itself."""
        broker = redis.Redis.from_url(self.settings.broker)
        try:
            queued = sum(broker.llen(key) for queue in QUEUES
                         for key in broker.scan_iter(match=f"{queue}*", _type="list"))
            held = set(broker.hkeys("unacked")) - self.abandoned
            return queued == 0 and not held
        finally:
            broker.close()

    def drain(self, timeout_s: float = 60) -> None:
        """Wait until the worker has nothing left to do."""
        eventually(self.broker_idle, timeout_s, lambda: f"an idle broker: {self.worker_log()}")

    def get_job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/v1/jobs/{job_id}", headers=self.auth)
        assert response.status_code == 200, response.get_json()
        return dict(response.get_json())

    def build_of(self, ref: str) -> dict[str, Any]:
        owner_name, version = ref.split("@")
        return dict(self.client.get(f"/v1/algorithms/{owner_name}/versions/{version}",
                                    headers=self.auth).get_json())

    def containers_of(self, ref: str, running_only: bool = False) -> list[Any]:
        build = self.build_of(ref)
        filters = {"label": f"algohost.build={build['id']}"}
        if running_only:
            filters["status"] = "running"
        return list(self.docker.containers.list(all=not running_only, filters=filters,
                                              sparse=True))


def publish(stack: Stack, directory: Path, expect: str = "succeeded",
            timeout_s: float = 900) -> Any:
    """Publish a directory and wait for its build; returns `owner/name@version`."""
    name = _name_of(directory)
    response = stack.client.post(f"/v1/algorithms/{stack.owner}/{name}/versions",
                                 data=make_archive(directory),
                                 headers={**stack.auth, "Content-Type": "application/gzip"})
    assert response.status_code in (200, 202), response.get_json()
    build = response.get_json()["build"]
    path = f"/v1/algorithms/{stack.owner}/{name}/versions/{build['version']}"

    def finished() -> Any:
        record = stack.client.get(path, headers=stack.auth).get_json()
        return record if record["status"] not in ("queued", "building") else None

    build = eventually(finished, timeout_s,
                       lambda: f"the build of {name} to finish: {stack.worker_log()}")
    assert build["status"] == expect, build.get("logs", "")[-3000:] + stack.worker_log()
    return build["ref"] if expect == "succeeded" else build


def publish_own(stack: Stack, directory: Path, tmp_path: Path, note: str) -> Any:
    """Publish a copy of `directory` with a comment added: a version with a build of its
    own, so warm containers that other tests left of the original never count here."""
    source = tmp_path / directory.name
    source.mkdir()
    for item in directory.iterdir():
        (source / item.name).write_bytes(item.read_bytes())
    with open(source / "main.py", "a") as handle:
        handle.write(f"\n# {note}\n")
    return publish(stack, source)


def _name_of(directory: Path) -> str:
    return str(tomllib.loads((directory / "algorithm.toml").read_text())["name"])


def call(stack: Stack, ref: str, payload: Any, **extra: Any) -> dict[str, Any]:
    """A synchronous call: POST with Prefer: wait, then poll until terminal."""
    job = stack.post_job(ref, payload, wait=60, **extra)
    if job["status"] in ("queued", "running"):
        job = stack.wait(job["id"], timeout_s=180)
    return job
