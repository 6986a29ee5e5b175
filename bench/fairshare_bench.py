"""Fair share: one owner's sync call while another owner has thousands of jobs queued,
against the same call on an idle system, in the same run.

Owner A submits `flood` calls of hello as fast as it can (no waiting); owner B times its
own sync calls of hello while A still has jobs waiting, and the report says how many A
had unfinished while B was timed (submits race the workers that drain them).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from algohost.config import Settings
from algohost.store import connect
from algohost.store.keys import KeyStore
from bench.algohost_bench import HELLO, Client
from bench.stats import summary

FLOOD_OWNER = "bench-flood"


def _sample(client: Client, ref: str, samples: list[float]) -> None:
    started = time.perf_counter()
    client.call(ref, {"name": "b"})
    samples.append(time.perf_counter() - started)


def run(settings: Settings, b_client: Client, b_ref: str, flood: int = 2000,
        samples: int = 200) -> dict[str, Any]:
    a_client = Client(settings, KeyStore(connect(settings)).create(FLOOD_OWNER))
    a_ref = a_client.publish(HELLO, FLOOD_OWNER)["ref"]
    a_client.call(a_ref, {"name": "first"})
    idle: list[float] = []
    for _ in range(samples):
        _sample(b_client, b_ref, idle)
    submitted = threading.Event()
    ids: list[str] = []

    def flood_submit() -> None:
        with ThreadPoolExecutor(8) as pool:
            ids.extend(pool.map(lambda i: a_client.submit(a_ref, {"name": str(i)}),
                                range(flood)))
        submitted.set()

    flooder = threading.Thread(target=flood_submit)
    flooder.start()
    while (a_client.lean.request("GET", "/v1/limits")[1]["usage"]["waiting"] < flood // 4
           and not submitted.is_set()):
        time.sleep(0.01)  # A has a real backlog before B is timed
    busy: list[float] = []
    backlog_seen = []
    while len(busy) < samples:
        usage = a_client.lean.request("GET", "/v1/limits")[1]["usage"]
        if usage["waiting"] == 0 and submitted.is_set():
            break  # A's flood has drained: what follows would be idle again
        backlog_seen.append(usage["waiting"] + usage["running"])
        _sample(b_client, b_ref, busy)
    flooder.join()
    drained_at = time.perf_counter()
    while a_client.job(ids[-1])["status"] in ("queued", "running"):
        time.sleep(0.05)
    idle_p50 = summary(idle)["p50_ms"]
    busy_summary = summary(busy)
    return {"flood_jobs": flood, "b_idle": summary(idle), "b_while_a_floods": busy_summary,
            "a_unfinished_while_sampled": {"min": min(backlog_seen), "max": max(backlog_seen)},
            "ratio": round(busy_summary["p50_ms"] / idle_p50, 2),
            "a_drain_seconds": round(time.perf_counter() - drained_at, 1)}
