"""`python -m bench`: every baseline and every algohost figure in one run, one table.

Needs the local stack (`algohost dev up`); writes bench/results.json beside the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from algohost.config import load_settings
from algohost.store import connect
from algohost.store.keys import KeyStore
from bench import (
    algohost_bench,
    baseline_celery,
    baseline_docker,
    baseline_flask,
    batch_bench,
    fairshare_bench,
    waiters_bench,
)

RESULTS = Path(__file__).resolve().parent / "results.json"


def _worker_pid(state_dir: str) -> int | None:
    for name in ("worker-calls.pid", "calls.pid"):
        path = Path(state_dir) / name
        if path.exists():
            return int(path.read_text().strip())
    return None


def measure(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    settings = load_settings()
    key = KeyStore(connect(settings)).create("bench")
    client = algohost_bench.Client(settings, key)
    caller = algohost_bench.Client(settings, KeyStore(connect(settings)).create("bench-cold"))
    results: dict[str, Any] = {}
    console.print("publishing examples/hello ...")
    hello = client.publish(algohost_bench.HELLO, "bench")
    client.call(hello["ref"], {"name": "first"})  # the image exists on this engine after it
    steps = [
        ("baseline_a_celery", lambda: baseline_celery.run(args.calls, args.jobs)),
        ("baseline_b_flask", lambda: baseline_flask.run(args.calls)),
        ("baseline_c_docker_run", lambda: baseline_docker.run(
            hello["image"], settings.sandbox.docker_url, args.cold)),
        ("warm_sync", lambda: algohost_bench.warm_sync(client, hello["ref"], args.calls)),
        # Throughput before the cold step: its fresh builds leave warm containers that
        # the pool would be evicting (in the background) while the async run goes on.
        ("async", lambda: algohost_bench.async_throughput(client, hello["ref"], args.jobs)),
        ("cold_call", lambda: algohost_bench.cold_calls(client, "bench", args.cold, caller)),
        ("batch", lambda: batch_bench.batch_throughput(client, hello["ref"], args.batch)),
        ("memory", lambda: algohost_bench.memory(
            settings, _worker_pid(settings.state_dir), hello["id"])),
        # Last: they load the stack with other owners' floods.
        ("fair_share", lambda: fairshare_bench.run(settings, client, hello["ref"], args.flood)),
        ("waiters", lambda: waiters_bench.run(settings, client, hello["ref"], args.waiters)),
    ]
    for name, step in steps:
        console.print(f"measuring {name} ...")
        results[name] = step()
        # Written as it goes: a step that fails late leaves the figures measured before it.
        RESULTS.write_text(json.dumps(results, indent=2))
    return results


def ratios(r: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    warm = r["warm_sync"]["p50_ms"] / r["baseline_a_celery"]["p50_ms"]
    cold = r["cold_call"]["p50_ms"] / r["baseline_c_docker_run"]["p50_ms"]
    thr = r["async"]["throughput_per_s"] / r["baseline_a_celery"]["throughput_per_s"]
    batch = r["batch"]["throughput_per_s"]
    fan = batch / r["async"]["throughput_per_s"]
    return [
        ("warm sync p50 / Celery no-op p50", warm, "<= 3.0", warm <= 3.0),
        ("cold call p50 / docker run --rm p50", cold, "<= 1.3", cold <= 1.3),
        ("async throughput / Celery throughput", thr, ">= 0.5", thr >= 0.5),
        ("batch items/s / async jobs/s", fan, ">= 4", fan >= 4),
        ("batch items/s", batch, ">= 2000", batch >= 2000),
        *fairness_ratios(r),
    ]


def fairness_ratios(r: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    found: list[tuple[str, float, str, bool]] = []
    if "fair_share" in r:
        fair = r["fair_share"]["ratio"]
        found.append(("B's sync p50 while A floods / idle", fair, "<= 2", fair <= 2))
    if "waiters" in r:
        w = r["waiters"]
        health = w["healthz_busy"]["p99_ms"]
        hello = w["hello_busy"]["p50_ms"] / w["hello_idle"]["p50_ms"]
        got = w["got_result"] / w["waiters"]
        found += [("healthz p99 ms with 1,000 waiters", health, "< 100", health < 100),
                  ("hello p50 with waiters / idle", hello, "<= 2", hello <= 2),
                  ("waiters that got their result", got, "= 1", got == 1)]
    return found


def render(r: dict[str, Any], console: Console) -> None:
    table = Table(title="algohost benchmarks (same machine, same run)")
    for column in ("figure", "p50 ms", "p99 ms", "throughput /s", "n"):
        table.add_column(column)
    for name in ("baseline_a_celery", "baseline_b_flask", "baseline_c_docker_run", "warm_sync",
                 "cold_call", "async", "batch"):
        row = r[name]
        table.add_row(name, str(row.get("p50_ms", "")), str(row.get("p99_ms", "")),
                      str(row.get("throughput_per_s", "")), str(row.get("n", row.get("jobs", ""))))
    console.print(table)
    targets = Table(title="targets")
    for column in ("ratio", "value", "target", "met"):
        targets.add_column(column)
    for label, value, target, met in ratios(r):
        targets.add_row(label, f"{value:.2f}", target, "yes" if met else "NO")
    console.print(targets)
    console.print(f"memory: {r['memory']}")
    for name in ("fair_share", "waiters"):
        if name in r:
            console.print(f"{name}: {json.dumps(r[name])}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10_000, help="inputs in the batch step")
    parser.add_argument("--flood", type=int, default=2000,
                        help="jobs another owner queues in the fair-share step")
    parser.add_argument("--waiters", type=int, default=1000,
                        help="concurrent Prefer: wait callers of a 5 s call")
    args = parser.parse_args()
    console = Console()
    results = measure(args, console)
    results["ratios"] = {label: round(v, 3) for label, v, _, _ in ratios(results)}
    RESULTS.write_text(json.dumps(results, indent=2))
    render(results, console)
    console.print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
