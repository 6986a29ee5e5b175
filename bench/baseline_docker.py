"""Baseline C: `docker run --rm` of the algorithm's own image, once per call.

This is what a platform without warm containers pays for every call.
"""

from __future__ import annotations

import time
from typing import Any

import docker

from bench.stats import summary

SCRIPT = ("import json, sys; sys.path.insert(0, '/opt/algorithm'); import main; "
          "print(json.dumps(main.apply({'name': 'bench'})))")


def run(image: str, docker_url: str, calls: int = 10) -> dict[str, Any]:
    client = docker.DockerClient(base_url=docker_url)
    client.containers.run(image, ["/opt/algo/bin/python", "-c", SCRIPT], remove=True,
                          network_mode="none", entrypoint=[])
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        out = client.containers.run(image, ["/opt/algo/bin/python", "-c", SCRIPT], remove=True,
                                    network_mode="none", entrypoint=[])
        samples.append(time.perf_counter() - started)
        assert b"Hello" in out, out
    return summary(samples)
