"""`python -m bench.build_disk_bench [--runs N]`: what the build disk quota's watch costs.

Fresh builds (a new owner each, so nothing is cached) straight on the engine's builder,
interleaved with the quota on (ALGOHOST_BUILD_DISK_MB's default) and off (0):
examples/hello (two steps under a second each: the watch measures each layer once,
after the step) and the same with an empty requirements file (a venv with pip and a
pip run, steps of seconds: the watch measures every second while they run).
Removes every image and cache entry it made.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from dataclasses import replace
from typing import Any

from algohost.config import SandboxSettings, load_settings
from algohost.manifest import loads_manifest
from algohost.sandbox.builder import ImageBuilder
from tests.stack import EXAMPLES

HELLO = EXAMPLES / "hello"


def build_once(builder: ImageBuilder, requirements: bool) -> float:
    owner = f"diskbench{uuid.uuid4().hex[:8]}"
    sources = {p.name: p.read_bytes() for p in HELLO.iterdir() if p.is_file()}
    manifest = loads_manifest((HELLO / "algorithm.toml").read_text())
    if requirements:
        sources["requirements.txt"] = b""
        manifest = replace(manifest, build=replace(manifest.build,
                                                   requirements="requirements.txt"))
    tag = f"algohost-bench/{owner}:disk"
    started = time.perf_counter()
    try:
        builder.build(f"b_{owner}", tag, sources, manifest, lambda line: None, owner=owner)
        return time.perf_counter() - started
    finally:
        builder.remove_image(tag)
        builder.remove_cache(owner, manifest.name)


def measure(settings: SandboxSettings, runs: int) -> dict[str, Any]:
    quotas = {"quota on": settings.build_disk_mb or SandboxSettings().build_disk_mb,
              "quota off": 0}
    builders = {name: ImageBuilder(replace(settings, build_disk_mb=mb))
                for name, mb in quotas.items()}
    results: dict[str, Any] = {}
    for variant, requirements in (("hello", False), ("hello + empty requirements", True)):
        seconds: dict[str, list[float]] = {name: [] for name in builders}
        for _ in range(runs):
            for name, builder in builders.items():  # interleaved: load drifts hit both
                seconds[name].append(build_once(builder, requirements))
        results[variant] = {name: {"median_s": round(statistics.median(s), 3),
                                   "runs_s": [round(x, 3) for x in s]}
                            for name, s in seconds.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results = measure(load_settings().sandbox, args.runs)
    results["load average (1 min) before, after"] = [load_before, os.getloadavg()[0]]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
