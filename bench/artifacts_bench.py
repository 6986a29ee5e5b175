"""Artifact figures against baselines measured in the same run (needs `algohost dev up`).

    python -m bench.artifacts_bench [--mb 200] [--model-mb 100]

1. A file streamed up and down through the API, against a plain `cp` of the same file.
2. The start of a container with a model attached: the model's first start (unpacked into
   the worker's cache), a later start (cache hit), against the same algorithm without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from algohost.cli.client import ApiClient
from algohost.cli.models import push_model
from algohost.config import load_settings
from algohost.store import connect
from algohost.store.keys import KeyStore
from bench.algohost_bench import Client

OWNER = "bench"


def random_file(directory: Path, mb: int) -> Path:
    path = directory / f"blob-{uuid.uuid4().hex[:8]}.bin"
    with open(path, "wb") as out:
        for _ in range(mb):
            out.write(os.urandom(1024 * 1024))
    return path


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def throughput(api: ApiClient, scratch: Path, mb: int) -> dict[str, Any]:
    source = random_file(scratch, mb)
    subprocess.run(["sync"], check=True)
    cp_s = timed(lambda: shutil.copyfile(source, scratch / "cp-copy.bin"))
    record: dict[str, Any] = {}

    def upload() -> None:
        with open(source, "rb") as f:
            record.update(api.upload_artifact(f, source.name, source.stat().st_size))

    up_s = timed(upload)
    down_s = timed(lambda: api.download_artifact(record["sha256"], scratch / "down.bin"))
    assert (scratch / "down.bin").stat().st_size == source.stat().st_size
    return {"mb": mb, "cp_s": round(cp_s, 3), "upload_s": round(up_s, 3),
            "download_s": round(down_s, 3),
            "upload_MBps": round(mb / up_s, 1), "download_MBps": round(mb / down_s, 1),
            "cp_MBps": round(mb / cp_s, 1),
            "upload_vs_cp": round(up_s / cp_s, 1), "download_vs_cp": round(down_s / cp_s, 1)}


MAIN = """import os

size = None


def load():
    global size
    path = "/models/weights"
    size = os.path.getsize(path) if os.path.exists(path) else 0


def apply(input):
    return {"model_bytes": size}
"""


def algorithm(scratch: Path, name: str, model: str | None) -> Path:
    root = scratch / name
    root.mkdir()
    (root / "main.py").write_text(MAIN)
    extra = f'[models]\nweights = "{model}"\n' if model else ""
    (root / "algorithm.toml").write_text(
        f'name = "{name}"\nentrypoint = "main:apply"\n[resources]\nmemory_mb = 256\n{extra}')
    return root


def fresh_start(client: Client, engine: Any, build: dict[str, Any]) -> dict[str, Any]:
    """Stop the build's warm containers, then call: the next call starts a new one."""
    for container in engine.containers.list(all=True, sparse=True,
                                            filters={"label": f"algohost.build={build['id']}"}):
        container.remove(force=True)
    job = client.call(build["ref"], None)
    return {"cold_start_ms": job["metrics"]["cold_start_ms"],
            "total_ms": job["metrics"]["total_ms"], "warm": job["warm"],
            "model_bytes": job["output"]["model_bytes"]}


def model_start(client: Client, api: ApiClient, scratch: Path, mb: int) -> dict[str, Any]:
    settings = load_settings()
    engine = docker.DockerClient(base_url=settings.sandbox.docker_url)
    tag = uuid.uuid4().hex[:6]
    weights = random_file(scratch, mb)
    ref = push_model(api, f"bench-weights-{tag}", weights)[0]["ref"]
    plain = client.publish(algorithm(scratch, f"nomodel-{tag}", None), OWNER)
    attached = client.publish(algorithm(scratch, f"withmodel-{tag}", ref), OWNER)
    try:
        client.call(plain["ref"], None)
        results = {"without_model": [fresh_start(client, engine, plain) for _ in range(3)]}
        results["model_first_start"] = client.call(attached["ref"], None)["metrics"]
        results["with_model_cached"] = [fresh_start(client, engine, attached)
                                        for _ in range(3)]
    finally:
        for build in (plain, attached):
            api.delete_version(OWNER, build["name"], build["version"])
    base = min(r["cold_start_ms"] for r in results["without_model"])
    cached = min(r["cold_start_ms"] for r in results["with_model_cached"])
    results["cold_start_ratio_cached_model_vs_none"] = round(cached / base, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--model-mb", type=int, default=100)
    args = parser.parse_args()
    settings = load_settings()
    key = KeyStore(connect(settings)).create(OWNER)
    api = ApiClient(settings.api_url, key, timeout_s=600)
    client = Client(settings, key)
    with tempfile.TemporaryDirectory(prefix="algohost-bench-", dir="/tmp") as scratch:
        print("throughput:", throughput(api, Path(scratch), args.mb))
        print("model start:", model_start(client, api, Path(scratch), args.model_mb))


if __name__ == "__main__":
    main()
