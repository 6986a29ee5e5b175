"""`python -m bench.local_bench`: the inner loop of writing an algorithm, timed as a user sees it.

Each figure is the wall time of the `algohost` command in a process of its own (its import
included), against a bare `docker run --rm` of the base image measured in the same run:
`run` of the function template cold (its image built) and warm (image cached), the
`--watch` save-to-result time, and `algohost test examples/pg_version` cold and cached.
Needs only a Docker engine; removes the images it made.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import docker

from algohost.cli.local import read_algorithm
from algohost.config import load_settings

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "from algohost.cli.main import cli; cli()"]
SAVED = re.compile(r"save-to-result (\d+) ms")


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([*CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"algohost {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds


def bare_docker_run(settings: Any, repeats: int) -> float:
    client = docker.DockerClient(base_url=settings.sandbox.docker_url)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        client.containers.run(settings.sandbox.base_image, ["python3", "-c", "pass"],
                              remove=True, network_mode="none")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def watch_saves(directory: Path, env: dict[str, str], saves: int) -> list[float]:
    """Save-to-result of `saves` edits, as `--watch` reports each."""
    process = subprocess.Popen([*CLI, "run", str(directory), '{"name": "bench"}', "--watch"],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    outputs: list[str] = []
    reports: list[float] = []
    assert process.stdout is not None and process.stderr is not None
    threading.Thread(target=lambda: outputs.extend(process.stdout or []), daemon=True).start()

    def read_errors() -> None:
        for line in process.stderr or []:
            found = SAVED.search(line)
            if found:
                reports.append(float(found.group(1)))

    threading.Thread(target=read_errors, daemon=True).start()
    main = directory / "main.py"
    original = main.read_text()
    try:
        wait_for(lambda: len(outputs) >= 1, "the first result")
        for n in range(saves):
            main.write_text(original.replace("hello", f"hello{n}"))  # one line's edit
            wait_for(lambda n=n: len(reports) >= n + 1, f"result {n + 1}")
    finally:
        process.terminate()
        process.wait(60)
    return reports


def wait_for(condition: Any, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.02)  # a benchmark's poll, not a test's synchronisation


def remove_images(client: Any, build_ids: list[str]) -> None:
    for build_id in build_ids:
        images = client.images.list(filters={"label": f"algohost.build={build_id}"})
        for image in sorted(images, key=lambda i: i.attrs["Created"], reverse=True):
            for tag in image.tags or [image.id]:
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.APIError:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--saves", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3, help="warm runs to take the median of")
    parser.add_argument("--skip-pg-version", action="store_true",
                        help="leave out `algohost test examples/pg_version` (minutes cold)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="algohost-local-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ALGOHOST_STATE_DIR": str(tmp / "state")}
    settings = load_settings(env)
    client = docker.DockerClient(base_url=settings.sandbox.docker_url)
    name = f"bench{os.getpid()}"
    directory = tmp / name
    made: list[str] = []
    results: dict[str, Any] = {}
    try:
        results["docker_run_baseline_s"] = bare_docker_run(settings, args.runs)
        timed(["init", name, "--dir", str(tmp)], env)
        made.append(read_algorithm(directory, settings.max_upload_bytes).build_id)
        results["run_cold_s"] = timed(["run", str(directory), '{"name": "a"}'], env)
        results["run_warm_s"] = statistics.median(
            timed(["run", str(directory), '{"name": "a"}'], env) for _ in range(args.runs))
        saves = watch_saves(directory, env, args.saves)
        made.append(read_algorithm(directory, settings.max_upload_bytes).build_id)
        results["watch_save_to_result_ms"] = {"median": statistics.median(saves),
                                              "max": max(saves), "saves": len(saves)}
        if not args.skip_pg_version:
            pg = ROOT / "examples" / "pg_version"
            made.append(read_algorithm(pg, settings.max_upload_bytes).build_id)
            results["test_pg_version_cold_s"] = timed(["test", str(pg)], env)
            results["test_pg_version_cached_s"] = timed(["test", str(pg)], env)
    finally:
        remove_images(client, made)
    base = results["docker_run_baseline_s"]
    results["run_warm_vs_docker_run"] = results["run_warm_s"] / base
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
