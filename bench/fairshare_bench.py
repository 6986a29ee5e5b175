"""Fair share: one owner's sync call while another owner has thousands of jobs queued,
against the same call on an idle system, in the same run.

Owner A queues `flood` calls of hello (submitted while the calls workers take no
messages); then owner B times its own sync calls of hello while A's jobs drain, and the
report says how many A had unfinished when B's first and last calls were timed, and the
machine's load average (1 min) before and after: on a shared host the ratio moves with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from algohost.config import Settings
from algohost.dispatch import BULK_QUEUE, CALLS_QUEUE
from algohost.store import connect
from algohost.store.keys import KeyStore
from algohost.worker.app import make_celery
from bench.algohost_bench import HELLO, Client
from bench.stats import summary

FLOOD_OWNER = "bench-flood"
WARM_UP_JOBS = 40


def _sample(client: Client, ref: str, samples: list[float]) -> None:
    started = time.perf_counter()
    client.call(ref, {"name": "b"})
    samples.append(time.perf_counter() - started)


@contextmanager
def paused_consumers(control: Any, queues: tuple[str, ...]) -> Iterator[None]:
    """Every worker consuming one of `queues` stops consuming it, and starts again after.

    Only those workers are told, and each answer is awaited only until all have replied:
    a broadcast waits out its whole timeout, long enough for a flood to drain."""
    consuming = {node: [q["name"] for q in found if q["name"] in queues]
                 for node, found in (control.inspect(timeout=5).active_queues() or {}).items()}
    consuming = {node: names for node, names in consuming.items() if names}
    nodes = list(consuming)
    for queue in queues:
        holders = [node for node in nodes if queue in consuming[node]]
        if holders:
            control.cancel_consumer(queue, destination=holders, reply=True,
                                    limit=len(holders), timeout=10)
    try:
        yield
    finally:
        for queue in queues:
            holders = [node for node in nodes if queue in consuming[node]]
            if holders:
                control.add_consumer(queue, destination=holders, reply=True,
                                     limit=len(holders), timeout=10)


def run(settings: Settings, b_client: Client, b_ref: str, flood: int = 2000,
        samples: int = 200) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    a_client = Client(settings, KeyStore(connect(settings)).create(FLOOD_OWNER))
    a_ref = a_client.publish(HELLO, FLOOD_OWNER)["ref"]
    # A's flood runs where floods run (the bulk worker): a small one first starts its warm
    # containers there, as the call of hello before every other step does for its path.
    warm_up = [a_client.submit(a_ref, {"name": f"warm-up {i}"}) for i in range(WARM_UP_JOBS)]
    while any(a_client.job(job_id)["status"] in ("queued", "running") for job_id in warm_up):
        time.sleep(0.1)
    idle: list[float] = []
    for _ in range(samples):
        _sample(b_client, b_ref, idle)
    # The calls workers stop taking messages while A queues its flood, so A really has
    # `flood` jobs unfinished when B's calls begin; then they take messages again.
    with paused_consumers(make_celery(settings).control, (CALLS_QUEUE, BULK_QUEUE)):
        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(lambda i: a_client.submit(a_ref, {"name": str(i)}),
                                range(flood)))
    busy: list[float] = []
    unfinished: list[int] = []
    while len(busy) < samples:
        usage = a_client.lean.request("GET", "/v1/limits")[1]["usage"]
        left = usage["waiting"] + usage["running"]
        if left == 0:
            break  # A's flood has drained: what follows would be idle again
        unfinished.append(left)
        _sample(b_client, b_ref, busy)
    drained_at = time.perf_counter()
    while a_client.job(ids[-1])["status"] in ("queued", "running"):
        time.sleep(0.05)
    if not busy:
        raise RuntimeError("A's flood drained before B's first call: nothing to compare")
    idle_p50 = summary(idle)["p50_ms"]
    busy_summary = summary(busy)
    return {"flood_jobs": flood, "b_idle": summary(idle), "b_while_a_floods": busy_summary,
            "a_unfinished_while_sampled": {"first": unfinished[0], "last": unfinished[-1]},
            "ratio": round(busy_summary["p50_ms"] / idle_p50, 2),
            "a_drain_seconds": round(time.perf_counter() - drained_at, 1),
            "load_average": {"before": round(load_before, 2),
                             "after": round(os.getloadavg()[0], 2)}}
