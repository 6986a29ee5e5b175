"""`python -m bench.metrics_bench --redis-url redis://127.0.0.1:6379/12`: the compare
endpoint's latency at 10,000 and at 1,000,000 recorded calls per build.

Two builds of one algorithm, calls spread over the last 30 days. The smaller set is
folded in job by job through the worker's own hook (MetricsHook.job_finished), which
also times a fold; the larger is written straight to the store as the hourly hashes
those hooks would have made (synthetic, summed here from a million sampled calls).
The endpoint is then read over HTTP (a werkzeug server, a keep-alive client) and its
latency printed (all time, and since 24h, 7d and 30d) with the ratio of the larger
set's to the smaller's, and to `GET /v1/limits` (one small read) measured in the same
run. The Redis database given
must be empty, or is flushed with --flush; never point it at one in use.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from werkzeug.serving import make_server

from algohost import semver
from algohost.api import create_app
from algohost.clock import iso, parse_iso
from algohost.config import Settings
from algohost.dispatch import RecordingDispatcher
from algohost.manifest import loads_manifest
from algohost.store import connect
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.keys import KeyStore
from algohost.store.metrics import DAY_S, HOUR_S, BuildMetrics, job_fields, merge
from algohost.store.registry import Registry
from algohost.worker.metering import MetricsHook
from bench.lean_http import LeanHTTP
from bench.stats import summary

OWNER, NAME = "bench", "algo"
HOURS = 30 * 24
READS = 200


def sampled_job(rng: random.Random, n: int, build_id: str, slow: bool, now: float) -> JobRecord:
    run_ms = rng.lognormvariate(4.0 if slow else 3.0, 0.4)
    status = JobStatus.FAILED if rng.random() < 0.01 else JobStatus.SUCCEEDED
    return JobRecord(id=f"j_{build_id}_{n}", owner=OWNER, status=status, build_id=build_id,
                     algorithm=f"{OWNER}/{NAME}", warm=rng.random() > 0.02,
                     finished_at=iso(now - rng.random() * HOURS * HOUR_S),
                     metrics={"run_ms": round(run_ms, 3), "total_ms": round(run_ms + 3, 3),
                              "peak_memory_bytes": rng.randint(40, 60) * 2**20},
                     custom_metrics={"accuracy": rng.random()})


def fold_through_hook(metrics: BuildMetrics, build_id: str, calls: int, slow: bool,
                      now: float) -> float:
    """Fold `calls` jobs one by one; returns microseconds per fold."""
    rng, hook = random.Random(calls), MetricsHook(metrics)
    jobs = [sampled_job(rng, n, build_id, slow, now) for n in range(calls)]
    started = time.perf_counter()
    for job in jobs:
        hook.job_finished(job)
    return (time.perf_counter() - started) / calls * 1e6


def write_aggregates(metrics: BuildMetrics, build_id: str, calls: int, slow: bool,
                     now: float) -> None:
    """What `calls` folds would leave: the hours', days' and lifetime's hashes."""
    rng = random.Random(calls)
    hours: dict[int, tuple[Counter[str], dict[str, float]]] = {}
    for n in range(calls):
        job = sampled_job(rng, n, build_id, slow, now)
        hour = int(parse_iso(job.finished_at or "") // HOUR_S * HOUR_S)
        counts, sums, maxima = job_fields(job)
        summed, kept = hours.setdefault(hour, (Counter(), {}))
        summed.update(counts)
        for name, value in sums.items():
            kept[name] = kept.get(name, 0.0) + value
        for name, value in maxima.items():
            kept[name] = max(kept.get(name, value), value)
        accuracy = job.custom_metrics["accuracy"]
        summed["c:accuracy:n"] += 1
        kept["c:accuracy:sum"] = kept.get("c:accuracy:sum", 0.0) + accuracy
        kept["c:accuracy:min"] = min(kept.get("c:accuracy:min", accuracy), accuracy)
        kept["c:accuracy:max"] = max(kept.get("c:accuracy:max", accuracy), accuracy)
    as_text = {hour: {**{k: str(v) for k, v in summed.items()},
                      **{k: repr(v) for k, v in kept.items()}, "c#": "1"}
               for hour, (summed, kept) in hours.items()}
    days: dict[int, list[dict[str, str]]] = {}
    for hour, fields in as_text.items():
        days.setdefault(hour // DAY_S * DAY_S, []).append(fields)
    pipe = metrics.redis.pipeline(transaction=False)
    for hour, fields in as_text.items():
        pipe.hset(metrics.hour_key(build_id, hour), mapping=fields)
        pipe.zadd(metrics.hours_key(build_id), {str(hour): hour})
    for day, parts in days.items():
        pipe.hset(metrics.day_key(build_id, day), mapping=_plain(merge(parts)))
        pipe.zadd(metrics.days_key(build_id), {str(day): day})
    pipe.hset(metrics.life_key(build_id), mapping=_plain(merge(as_text.values())))
    pipe.execute()


def _plain(merged: dict[str, float]) -> dict[str, str]:
    return {k: str(int(v)) if v.is_integer() else repr(v) for k, v in merged.items()}


def interleaved(reads: dict[str, Callable[[], int]]) -> dict[str, Any]:
    """Each read's latency, taking turns so that load on the host weighs on all alike."""
    samples: dict[str, list[float]] = {name: [] for name in reads}
    for round_ in range(READS + 10):
        for name, read in reads.items():
            started = time.perf_counter()
            status = read()
            elapsed = time.perf_counter() - started
            assert status == 200, (name, status)
            if round_ >= 10:  # the first rounds warm caches and connections
                samples[name].append(elapsed)
    return {name: summary(found) for name, found in samples.items()}


def publish_two(registry: Registry, name: str) -> list[Any]:
    manifest = loads_manifest(f'name = "{name}"\nentrypoint = "main:apply"\n')
    builds = []
    for n in range(2):
        build, _ = registry.publish(OWNER, name, f"{name}{n}", manifest, b"", semver.Bump.MINOR)
        registry.mark_succeeded(build.id)
        builds.append(build)
    return builds


def run(redis_url: str, small: int, large: int) -> dict[str, Any]:
    settings = Settings(redis_url=redis_url)
    client = connect(settings)
    registry, metrics, now = Registry(client), BuildMetrics.from_settings(client, settings), \
        time.time()
    figures: dict[str, Any] = {"hours": HOURS}
    paths: dict[str, str] = {}
    for label, calls, hooked in (("small", small, True), ("large", large, False)):
        name = f"calls-{calls}"
        builds = publish_two(registry, name)
        before = client.info("memory")["used_memory"]
        started = time.perf_counter()
        for n, build in enumerate(builds):
            if hooked:
                figures["fold_us_per_job"] = round(
                    fold_through_hook(metrics, build.id, calls, n == 1, now), 1)
            else:
                write_aggregates(metrics, build.id, calls, n == 1, now)
        figures[f"{label}_calls_per_build"] = calls
        figures[f"{label}_record_s"] = round(time.perf_counter() - started, 1)
        figures[f"{label}_redis_mb"] = round((client.info("memory")["used_memory"] - before)
                                             / 2**20, 2)
        paths[label] = (f"/v1/algorithms/{OWNER}/{name}/metrics?versions="
                        + ",".join(b.version for b in builds))
    key = KeyStore(client).create(OWNER)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = create_app(settings, dispatcher=RecordingDispatcher(), docker_ping=lambda: True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http = LeanHTTP(f"http://127.0.0.1:{server.server_port}",
                        {"Authorization": f"Bearer {key}"})
        for label, calls in (("small", small), ("large", large)):
            status, body = http.request("GET", paths[label])
            assert status == 200 and [b["calls"] for b in body["builds"]] == [calls] * 2, body
            figures[f"{label}_p50_run_ms_of_builds"] = [round(b["run_ms"]["p50"], 1)
                                                        for b in body["builds"]]
        reads: dict[str, Callable[[], int]] = {
            "limits": lambda: http.request("GET", "/v1/limits")[0]}
        for since in ("", "&since=24h", "&since=7d", "&since=30d"):
            for label in ("small", "large"):
                path = paths[label] + since
                reads[f"{label}{since.replace('&since=', '_since_')}"] = (
                    lambda path=path: http.request("GET", path)[0])
        figures["latency"] = interleaved(reads)
    finally:
        server.shutdown()
    p50 = {name: found["p50_ms"] for name, found in figures["latency"].items()}
    figures["p50_ratio_large_to_small"] = {
        name[len("large"):] or "_all": round(p50[name] / p50["small" + name[len("large"):]], 2)
        for name in p50 if name.startswith("large")}
    figures["p50_ratio_small_to_limits"] = round(p50["small"] / p50["limits"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--flush", action="store_true", help="empty the database first")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    client = connect(Settings(redis_url=args.redis_url))
    if client.dbsize() and not args.flush:
        raise SystemExit(f"{args.redis_url} holds keys; give an empty database or --flush")
    client.flushdb()
    try:
        print(json.dumps(run(args.redis_url, args.small, args.large), indent=1))
    finally:
        client.flushdb()


if __name__ == "__main__":
    main()
