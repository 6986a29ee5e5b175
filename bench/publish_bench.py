"""`python -m bench.publish_bench --redis-url URL`: builds and the first call after a publish.

On a stack of its own (a worker process, its own Redis database, which it FLUSHES: give it
one nobody else uses):
- examples/pg_version's first build under a fresh owner (apt, a C compile, pip: nothing
  cached) against its republish after one line of its code changed (goal: <= 10 s and
  <= 10 % of the first);
- the latency of the first call made as soon as a publish reports success, with prewarm
  off (ALGOHOST_PREWARM=0, the baseline) and on.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from algohost.archive import make_archive
from algohost.sandbox.builder import ImageBuilder
from tests.stack import EXAMPLES, Stack


def publish_timed(stack: Stack, directory: Path, name: str) -> tuple[dict[str, Any], float]:
    """The finished build and the seconds from the upload to its success."""
    started = time.perf_counter()
    response = stack.client.post(f"/v1/algorithms/{stack.owner}/{name}/versions",
                                 data=make_archive(directory),
                                 headers={**stack.auth, "Content-Type": "application/gzip"})
    build = response.get_json()["build"]
    path = f"/v1/algorithms/{stack.owner}/{name}/versions/{build['version']}"
    while build["status"] in ("queued", "building"):
        time.sleep(0.05)  # the benchmark's poll interval
        build = stack.client.get(path, headers=stack.auth).get_json()
    seconds = time.perf_counter() - started
    if build["status"] != "succeeded":
        raise SystemExit(f"the build of {name} failed:\n{build.get('logs', '')[-3000:]}")
    return build, seconds


def rebuild(stack: Stack, tmp: Path) -> dict[str, Any]:
    source = tmp / "pg_version"
    shutil.copytree(EXAMPLES / "pg_version", source)
    _, first_s = publish_timed(stack, source, "pg_version")
    main = source / "main.py"
    lines = main.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("Report", "Reports", 1)  # one line of code changed
    main.write_text("".join(lines))
    build, again_s = publish_timed(stack, source, "pg_version")
    cached = build["logs"].count("Using cache")
    return {"first_build_s": round(first_s, 2), "code_only_rebuild_s": round(again_s, 2),
            "ratio": round(again_s / first_s, 4), "steps_from_cache": cached}


def first_calls(stack: Stack, tmp: Path, repeats: int, pause_s: float) -> dict[str, Any]:
    """The first call of `repeats` new versions, made `pause_s` after each publish
    reported success (0: at once; a person's next command comes a second or more later)."""
    latencies, cold = [], []
    for n in range(repeats):
        source = tmp / f"hello-{pause_s}-{n}"
        shutil.copytree(EXAMPLES / "hello", source)
        with open(source / "main.py", "a") as handle:
            handle.write(f"\n# {uuid.uuid4().hex}\n")  # a version of its own
        build, _ = publish_timed(stack, source, "hello")
        time.sleep(pause_s)  # the time between publish and the first call being measured
        started = time.perf_counter()
        job = stack.post_job(build["ref"], {"name": "first"}, wait=60)
        latencies.append((time.perf_counter() - started) * 1000)
        cold.append(job["metrics"]["cold_start_ms"])
    return {"first_call_ms_median": round(statistics.median(latencies), 1),
            "cold_start_ms_median": round(statistics.median(cold), 1),
            "first_call_ms": [round(x, 1) for x in latencies]}


def first_calls_both(stack: Stack, tmp: Path, repeats: int) -> dict[str, Any]:
    return {"at_once": first_calls(stack, tmp, repeats, 0.0),
            "after_1s": first_calls(stack, tmp, repeats, 1.0)}


def on_stack(tmp: Path, redis_url: str, prewarm: bool, work: Any) -> Any:
    owner = f"bench{uuid.uuid4().hex[:8]}"  # a fresh owner: an empty build cache scope
    tmp.mkdir(parents=True, exist_ok=True)
    stack = Stack(tmp, owner=owner, node=owner, ALGOHOST_REDIS_URL=redis_url,
                  ALGOHOST_PREWARM="1" if prewarm else "0")
    stack.start_worker(concurrency=2)
    try:
        return work(stack)
    finally:
        stack.close()
        builder = ImageBuilder(stack.settings.sandbox)
        for name in ("pg_version", "hello"):
            builder.remove_cache(owner, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis-url", required=True, help="a Redis database to flush and use")
    parser.add_argument("--calls", type=int, default=3, help="first calls per setting")
    parser.add_argument("--skip-rebuild", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="algohost-publish-bench-"))
    results: dict[str, Any] = {}
    if not args.skip_rebuild:
        results["pg_version"] = on_stack(tmp / "rebuild", args.redis_url, True,
                                         lambda stack: rebuild(stack, tmp))
    for prewarm in (False, True):
        key = "first_call_prewarm_on" if prewarm else "first_call_prewarm_off"
        work = functools.partial(first_calls_both, tmp=tmp / key, repeats=args.calls)
        results[key] = on_stack(tmp / key, args.redis_url, prewarm, work)
    off, on = results["first_call_prewarm_off"], results["first_call_prewarm_on"]
    for when in ("at_once", "after_1s"):
        results[f"first_call_on_vs_off_{when}"] = round(
            on[when]["first_call_ms_median"] / off[when]["first_call_ms_median"], 3)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
