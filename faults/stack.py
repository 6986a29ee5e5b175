"""The suite's own stack: a Redis with AOF, a dockerd, an OpenBao dev server, the API under
gunicorn and one Celery worker process per queue, each of which a row may kill and restart.

Built from the pieces `algohost dev up` and the integration tests use (`algohost.dev`,
`tests.stack`), so the suite exercises the same commands an operator runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from algohost.dev import commands as dev
from algohost.dev import stack as procs
from algohost.dev.stack import Part
from algohost.dispatch import BULK_QUEUE, CALLS_QUEUE
from faults.watch import read_job
from tests.stack import Stack, free_port, publish

WORKERS = {"calls": "worker-calls", "builds": "worker-builds", "webhooks": "worker-webhooks"}
BRIDGE = "algofaults0"  # the suite's dockerd's own bridge; docker0 belongs to the shared one
BRIDGE_ADDRESS = "10.213.77.1/24"


def wait_until(check: Callable[[], bool], timeout_s: float, what: str,
               interval_s: float = 0.1) -> float:
    """Seconds until `check` held; RuntimeError naming `what` past the timeout."""
    started = time.monotonic()
    if not procs.wait_for(check, timeout_s, interval_s=interval_s):
        raise RuntimeError(f"{what} did not happen within {timeout_s:g} s")
    return time.monotonic() - started


class Redis:
    """A redis-server with AOF (appendfsync everysec), restartable on the same files."""

    def __init__(self, state: Path, port: int) -> None:
        self.part = Part("redis", "redis-server", state)
        self.port, self.dir = port, state / "redis"
        self.url = f"redis://127.0.0.1:{port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        procs.spawn(self.part, [procs.executable("redis-server"), "--port", str(self.port),
                                "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                                "--appendonly", "yes", "--appendfsync", "everysec"])
        wait_until(lambda: procs.redis_answers(self.url), 30, "redis-server answering")

    def kill(self) -> None:
        """SIGKILL, as a crash or a power cut: only what AOF already flushed survives."""
        pid = self.part.running_pid()
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            procs.wait_for(lambda: not procs.is_alive(pid, self.part.marker), 10)

    def stop(self) -> None:
        procs.stop_all([self.part])


class Dockerd:
    """The suite's own Docker engine: its own data root, exec root, pid file, socket and bridge,
    so restarting it never touches the engine (and the docker0 bridge) others use."""

    def __init__(self, state: Path) -> None:
        self.dir = state / "dockerd"
        self.part = Part("dockerd", "dockerd", state)
        self.url = f"unix://{self.dir / 'docker.sock'}"

    def argv(self) -> list[str]:
        return [procs.executable("dockerd"), "--host", self.url,
                "--data-root", str(self.dir / "data"), "--exec-root", str(self.dir / "exec"),
                "--pidfile", str(self.dir / "docker.pid"), "--bridge", BRIDGE,
                "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                "--ip-forward=false", "--cgroup-parent", "algohost-faults"]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode:
            for command in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                            ["ip", "addr", "add", BRIDGE_ADDRESS, "dev", BRIDGE],
                            ["ip", "link", "set", BRIDGE, "up"]):
                subprocess.run(command, check=True, capture_output=True)
        procs.spawn(self.part, self.argv())
        wait_until(lambda: procs.docker_answers(self.url), 60, "the suite's dockerd answering",
                   interval_s=0.5)

    def load_image(self, image: str, source_url: str) -> None:
        """Copy `image` from the engine at `source_url` (it is not pulled: no registry here)."""
        probe = subprocess.run(["docker", "--host", self.url, "image", "inspect", image],
                               capture_output=True)
        if probe.returncode == 0:
            return
        if subprocess.run(["docker", "--host", source_url, "image", "inspect", image],
                          capture_output=True).returncode:
            raise RuntimeError(f"the base image {image} is not in the engine at {source_url}: "
                               "`algohost dev up` makes it")
        save = subprocess.Popen(["docker", "--host", source_url, "save", image],
                                stdout=subprocess.PIPE)
        subprocess.run(["docker", "--host", self.url, "load", "-q"], stdin=save.stdout,
                       check=True, capture_output=True)
        save.wait()

    def stop(self) -> None:
        procs.stop_all([self.part], grace_s=30)

    def remove_bridge(self, *others: str) -> None:
        for bridge in (BRIDGE, *others):
            subprocess.run(["ip", "link", "delete", bridge], capture_output=True)


class FaultStack(Stack):
    """tests.stack.Stack (its keys, publish helpers, in-process client) plus real processes:
    the API under gunicorn and one worker process per queue, on the suite's own services."""

    def __init__(self, state: Path, redis_url: str, docker_url: str, **extra_env: str) -> None:
        self.state = state
        self.api_url = f"http://127.0.0.1:{free_port()}"
        super().__init__(state, owner="faults", node="faults", ALGOHOST_REDIS_URL=redis_url,
                         ALGOHOST_DOCKER_URL=docker_url, ALGOHOST_API_URL=self.api_url,
                         **extra_env)
        self.parts = dev.parts(state)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.key}"

    # Processes ---------------------------------------------------------------------------

    def start_worker_for(self, queue: str, concurrency: int | None = None) -> int:
        name = WORKERS[queue]
        threads = concurrency or {"calls": self.settings.worker_concurrency, "builds": 2,
                                  "webhooks": 4}[queue]
        # One calls worker takes the bulk queue too: the faults kill it mid-flood.
        queues = f"{CALLS_QUEUE},{BULK_QUEUE}" if queue == CALLS_QUEUE else queue
        return procs.spawn(self.parts[name], dev.worker_argv(name, queues, threads, self.state),
                           self.env)

    def start_workers(self) -> None:
        for queue in WORKERS:
            self.start_worker_for(queue)

    def start_api(self) -> None:
        procs.spawn(self.parts["api"], dev.api_argv(self.settings), self.env)
        wait_until(lambda: procs.api_health(self.api_url) is not None, 60, "the API answering")

    def kill(self, name: str) -> None:
        """SIGKILL a part's whole process group (gunicorn's workers too), as the OOM killer or
        a lost host would: no shutdown handler runs, no message is given back."""
        part = self.parts[name]
        pid = part.running_pid()
        if pid is None:
            raise RuntimeError(f"{name} is not running")
        os.killpg(pid, signal.SIGKILL)
        procs.wait_for(lambda: not procs.is_alive(pid, part.marker), 10)

    def stop_processes(self) -> None:
        procs.stop_all([self.parts[name] for name in ["api", *WORKERS.values()]], grace_s=20)

    # Calls ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.api_url + path

    def submit(self, ref: str, payload: Any, **extra: Any) -> dict[str, Any]:
        response = self.http.post(self.url("/v1/jobs"),
                                  json={"algorithm": ref, "input": payload, **extra}, timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def publish(self, directory: Path) -> str:
        return str(publish(self, directory))

    def publish_as_other(self, directory: Path) -> str:
        """Publish under the second owner (its own key), for rows about fairness."""
        owner, auth = self.owner, self.auth
        self.owner, self.auth = f"{owner}-other", {"Authorization": f"Bearer {self.other_key}"}
        try:
            return str(publish(self, directory))
        finally:
            self.owner, self.auth = owner, auth

    def other_session(self) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.other_key}"
        return session

    def job(self, job_id: str) -> dict[str, Any] | None:
        return read_job(self, job_id)
