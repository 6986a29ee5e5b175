"""algohost's own figures, measured through the HTTP API of the running local stack.

Warm sync calls, the cold first call of a new build, async throughput and memory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import requests

from algohost.archive import make_archive
from algohost.config import Settings
from bench.lean_http import LeanHTTP
from bench.stats import summary

HELLO = Path(__file__).resolve().parent.parent / "examples" / "hello"


class Client:
    def __init__(self, settings: Settings, key: str) -> None:
        self.base = settings.api_url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {key}"
        self.lean = LeanHTTP(self.base, {"Authorization": f"Bearer {key}"})

    def publish(self, directory: Path, owner: str) -> dict[str, Any]:
        import tomllib

        name = tomllib.loads((directory / "algorithm.toml").read_text())["name"]
        response = self.http.post(f"{self.base}/v1/algorithms/{owner}/{name}/versions",
                                  data=make_archive(directory),
                                  headers={"Content-Type": "application/gzip"}, timeout=60)
        response.raise_for_status()
        build = response.json()["build"]
        while build["status"] in ("queued", "building"):
            time.sleep(0.3)
            build = self.http.get(
                f"{self.base}/v1/algorithms/{owner}/{name}/versions/{build['version']}",
                timeout=10).json()
        if build["status"] != "succeeded":
            raise RuntimeError(f"build failed: {build.get('logs', '')[-2000:]}")
        return dict(build)

    def call(self, ref: str, payload: Any) -> dict[str, Any]:
        status, job = self.lean.request("POST", "/v1/jobs", {"algorithm": ref, "input": payload},
                                        {"Prefer": "wait=60"})
        if status not in (200, 202) or job["status"] != "succeeded":
            raise RuntimeError(f"call failed ({status}): {job}")
        return dict(job)

    def submit(self, ref: str, payload: Any) -> str:
        status, job = self.lean.request("POST", "/v1/jobs", {"algorithm": ref, "input": payload})
        if status != 202:
            raise RuntimeError(f"submit failed ({status}): {job}")
        return str(job["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.lean.request("GET", f"/v1/jobs/{job_id}")[1])

def warm_sync(client: Client, ref: str, calls: int) -> dict[str, Any]:
    for i in range(20):
        client.call(ref, {"name": str(i)})
    samples, server_side, cold = [], [], 0
    for i in range(calls):
        started = time.perf_counter()
        job = client.call(ref, {"name": str(i)})
        samples.append(time.perf_counter() - started)
        server_side.append(job["metrics"]["total_ms"] / 1000)
        # A container is recycled after ALGOHOST_POOL_MAX_CALLS calls: counted, kept.
        cold += 0 if job["warm"] else 1
    return {**summary(samples), "server_total": summary(server_side), "cold_calls": cold}


def cold_calls(client: Client, owner: str, repeats: int, caller: Client) -> dict[str, Any]:
    """Each sample publishes a fresh build, then times its first call by another owner.

    A successful build prewarms one container for its owner's calls; warm containers are
    never shared across calling owners, so `caller`'s call starts one of its own."""
    samples, cold_starts = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / "hello"
            shutil.copytree(HELLO, copy)
            with open(copy / "main.py", "a") as source:
                source.write(f"\n# variant {uuid.uuid4().hex}\n")
            build = client.publish(copy, owner)
        client.http.put(f"{client.base}/v1/algorithms/{owner}/{build['name']}/visibility",
                        json={"visibility": "public"}, timeout=30).raise_for_status()
        started = time.perf_counter()
        job = caller.call(build["ref"], {"name": "cold"})
        samples.append(time.perf_counter() - started)
        cold_starts.append(job["metrics"]["cold_start_ms"] / 1000)
        assert not job["warm"], job
        # The variant has served its purpose: its containers and image go with it.
        client.http.delete(f"{client.base}/v1/algorithms/{build['owner']}/{build['name']}"
                           f"/versions/{build['version']}", timeout=30).raise_for_status()
    return {**summary(samples), "cold_start": summary(cold_starts)}


def async_throughput(client: Client, ref: str, jobs: int, submitters: int = 8) -> dict[str, Any]:
    """Submit `jobs` calls from several threads; time until every one has finished.

    Jobs finish roughly in submission order, so the clock watches the last one
    and then checks the rest once: polling thousands of jobs in a loop would
    load the API it measures."""
    started = time.perf_counter()
    with ThreadPoolExecutor(submitters) as pool:
        ids = list(pool.map(lambda i: client.submit(ref, {"name": str(i)}), range(jobs)))
    submitted = time.perf_counter() - started
    pending, finished_at = list(ids), 0.0
    while pending:
        if client.job(pending[-1])["status"] in ("queued", "running"):
            time.sleep(0.02)
            continue
        # The check of the others below is not part of the run being timed.
        finished_at = time.perf_counter()
        with ThreadPoolExecutor(submitters) as pool:
            states = list(pool.map(lambda j: client.job(j)["status"], pending))
        failed = [j for j, s in zip(pending, states, strict=True)
                  if s not in ("queued", "running", "succeeded")]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed, e.g. {client.job(failed[0])}")
        pending = [j for j, s in zip(pending, states, strict=True) if s != "succeeded"]
    elapsed = finished_at - started
    return {"jobs": jobs, "seconds": round(elapsed, 2), "submit_seconds": round(submitted, 2),
            "throughput_per_s": round(jobs / elapsed, 1)}


def memory(settings: Settings, worker_pid: int | None, build_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    if worker_pid:
        with open(f"/proc/{worker_pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    result["worker_rss_bytes"] = int(line.split()[1]) * 1024
    client = docker.DockerClient(base_url=settings.sandbox.docker_url)
    usages = []
    for container in client.containers.list(filters={"label": f"algohost.build={build_id}"},
                                            sparse=True):
        try:
            stats = container.stats(stream=False)
        except (docker.errors.APIError, ValueError):  # evicted between the listing and the read
            continue
        usages.append(int(stats.get("memory_stats", {}).get("usage", 0)))
    result["warm_containers"] = len(usages)
    result["per_container_bytes"] = max(usages) if usages else None
    return result
