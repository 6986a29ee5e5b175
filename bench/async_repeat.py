"""`python -m bench.async_repeat --runs 8`: the async ratio, run after run.

Each run measures bare Celery's throughput (baseline A) and then algohost's async
throughput (2,000 submitted calls of hello) on the running local stack, back to back, and
prints their ratio; the last line says in how many runs it reached 0.5.
"""

from __future__ import annotations

import argparse
import sys

from algohost.config import load_settings
from algohost.store import connect
from algohost.store.keys import KeyStore
from bench import algohost_bench, baseline_celery

GOAL = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.async_repeat")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    settings = load_settings()
    client = algohost_bench.Client(settings, KeyStore(connect(settings)).create("bench"))
    hello = client.publish(algohost_bench.HELLO, "bench")
    client.call(hello["ref"], {"name": "first"})
    met = 0
    for run in range(1, args.runs + 1):
        celery = baseline_celery.run(100, args.jobs)["throughput_per_s"]
        ours = algohost_bench.async_throughput(client, hello["ref"], args.jobs)
        ratio = ours["throughput_per_s"] / celery
        met += ratio >= GOAL
        print(f"run {run}: Celery {celery:.1f}/s, algohost {ours['throughput_per_s']:.1f}/s "
              f"(submitted in {ours['submit_seconds']} s), ratio {ratio:.2f}", flush=True)
    print(f"async / Celery >= {GOAL} in {met} of {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
