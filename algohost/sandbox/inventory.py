"""What algohost containers are running on this engine, by build: for operators.

Reads labels only; it never attaches to, stops or inspects the inside of a container.
"""

from __future__ import annotations

from typing import Any

from algohost.config import SandboxSettings
from algohost.sandbox.docker import LABEL_BUILD, LABEL_MANAGED, LABEL_WORKER, docker_client

LABEL_ALGORITHM = "algohost.algorithm"


def warm_containers(settings: SandboxSettings) -> list[dict[str, Any]]:
    """Running containers grouped by build: algorithm, build id, count, workers."""
    client = docker_client(settings, timeout_s=5)
    by_build: dict[str, dict[str, Any]] = {}
    for container in client.containers.list(filters={"label": f"{LABEL_MANAGED}=1"}, sparse=True):
        labels = container.attrs.get("Labels") or {}
        build = labels.get(LABEL_BUILD, "?")
        entry = by_build.setdefault(build, {"build": build, "containers": 0, "workers": [],
                                            "algorithm": labels.get(LABEL_ALGORITHM, "")})
        entry["containers"] += 1
        worker = labels.get(LABEL_WORKER, "")
        if worker and worker not in entry["workers"]:
            entry["workers"].append(worker)
    return sorted(by_build.values(), key=lambda e: (e["algorithm"], e["build"]))
