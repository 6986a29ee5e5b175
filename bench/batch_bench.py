"""Batch throughput: N inputs to examples/hello in one batch, items per second end to end.

Measured from the submit to the moment the batch reports completed, through the HTTP API
of the running local stack, so it compares with the per-job async figure of the same run.
"""

from __future__ import annotations

import time
from typing import Any

from bench.algohost_bench import Client


def batch_throughput(client: Client, ref: str, items: int) -> dict[str, Any]:
    inputs = [{"name": str(i)} for i in range(items)]
    started = time.perf_counter()
    response = client.http.post(f"{client.base}/v1/batches",
                                json={"algorithm": ref, "inputs": inputs}, timeout=300)
    response.raise_for_status()
    batch = response.json()
    submitted = time.perf_counter() - started
    while batch["status"] == "running":
        time.sleep(0.05)
        batch = client.http.get(f"{client.base}/v1/batches/{batch['id']}", timeout=10).json()
    elapsed = time.perf_counter() - started
    if batch["counts"]["succeeded"] != items:
        raise RuntimeError(f"batch {batch['id']} ended {batch['status']}: {batch['counts']}")
    return {"n": items, "seconds": round(elapsed, 2), "submit_seconds": round(submitted, 2),
            "throughput_per_s": round(items / elapsed, 1)}
