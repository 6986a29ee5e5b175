"""`python -m bench.records_bench`: a job record's Redis form, written and read, in microseconds.

The baseline, measured in the same run, is what the store did before typed records: a
dict of fields, each through json.dumps(separators=...) and json.loads. Needs no services.
CPU time (time.process_time), best of several repeats, so other load on the host counts
less; the ratio is the figure to compare across machines.
"""

from __future__ import annotations

import json
import time
import timeit
from collections.abc import Callable
from typing import Any

from algohost.store.jobs import JobRecord, JobStatus

REPEATS, NUMBER = 7, 20_000


def sample() -> JobRecord:
    """A queued job as the API writes it."""
    return JobRecord(
        id="j_0123456789abcdef01234567", owner="alice", status=JobStatus.QUEUED,
        requested="alice/hello@latest", algorithm="alice/hello@1.2.3",
        build_id="b_0123456789abcdef0123", image="algohost/alice/hello:0123456789abcdef",
        input={"x": 1, "name": "world"}, created_at="2026-11-29T15:00:00.000Z", timeout_s=30)


def best_us(step: Callable[[], Any]) -> float:
    runs = timeit.repeat(step, number=NUMBER, repeat=REPEATS, timer=time.process_time)
    return min(runs) / NUMBER * 1e6


def run() -> dict[str, float]:
    job = sample()
    raw = job.to_redis()
    plain = {name: json.loads(text) for name, text in raw.items()}
    figures = {
        "baseline_encode_us": best_us(
            lambda: {k: json.dumps(v, separators=(",", ":")) for k, v in plain.items()}),
        "baseline_decode_us": best_us(lambda: {k: json.loads(v) for k, v in raw.items()}),
        "record_encode_us": best_us(job.to_redis),
        "record_decode_us": best_us(lambda: JobRecord.from_redis(raw)),
    }
    figures["encode_ratio"] = figures["record_encode_us"] / figures["baseline_encode_us"]
    figures["decode_ratio"] = figures["record_decode_us"] / figures["baseline_decode_us"]
    return figures


def main() -> None:
    figures = run()
    for name, value in figures.items():
        print(f"{name:20} {value:8.2f}")


if __name__ == "__main__":
    main()
