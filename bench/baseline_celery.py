"""Baseline A: a Celery + Redis no-op task round trip, same broker settings as algohost.

Uses its own Redis database and a real `celery worker -P threads` process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from celery import Celery

from bench.stats import summary

REDIS = os.environ.get("BENCH_BASELINE_REDIS", "redis://127.0.0.1:6379/12")

app = Celery("baseline", broker=REDIS, backend=REDIS)
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1, task_default_queue="noop",
                broker_connection_retry_on_startup=True, result_expires=600)


@app.task(name="bench.noop")
def noop(x: Any) -> Any:
    return x


def run(calls: int = 500, throughput_jobs: int = 2000, concurrency: int = 8) -> dict[str, Any]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.baseline_celery:app", "worker", "-P",
         "threads", "-c", str(concurrency), "-Q", "noop", "--loglevel", "WARNING",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "-n", "bench-noop@%h"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        noop.delay(0).get(timeout=60)  # warm up: the worker is ready
        for _ in range(50):
            noop.delay(0).get(timeout=10)
        samples = []
        for i in range(calls):
            started = time.perf_counter()
            noop.delay(i).get(timeout=10)
            samples.append(time.perf_counter() - started)
        started = time.perf_counter()
        results = [noop.delay(i) for i in range(throughput_jobs)]
        for result in results:
            result.get(timeout=120)
        elapsed = time.perf_counter() - started
        return {**summary(samples), "throughput_per_s": round(throughput_jobs / elapsed, 1)}
    finally:
        worker.terminate()
        worker.wait(30)
