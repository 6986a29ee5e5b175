"""`python -m bench.pipeline_bench`: what the pipeline scheduler adds per step, against plain
jobs doing the same work, measured in the same run on a stack of the bench's own.

The work is a chain of N calls of examples/hello, each taking the previous one's output:
once as a pipeline of N steps (cache off), and once as N plain jobs that a client submits
one after the other, waiting on each (Prefer-style, on the job's done list). The figures:
the wall time of each, their ratio, and the gap between one step's end and the next step's
submit, read from the job records (the scheduler's own latency: job hook, advance
message, compare-and-set, submit). Needs Redis, Docker and the base image; it starts its
own worker on a Redis database of its own (--redis-url, default db 12), which it empties.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from algohost.clock import ms_between
from algohost.store.jobs import JobStore
from algohost.store.pipelines import PipelineStore, RunStatus
from bench.stats import percentile
from tests.stack import EXAMPLES, Stack, publish

REDIS_URL = "redis://127.0.0.1:6379/12"


def chain_spec(ref: str, steps: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"steps": {"s0": {"algorithm": ref, "input": "$input"}}}
    for index in range(1, steps):
        spec["steps"][f"s{index}"] = {"algorithm": ref,
                                      "input": f"$steps.s{index - 1}.output.greeting"}
    return spec


def pipeline_chain(stack: Stack, ref: str, steps: int,
                   ends: list[tuple[float, float]]) -> tuple[float, list[dict[str, Any]]]:
    """The chain as one run; `ends` gets (run start -> first submit, last end -> run end)."""
    spec = chain_spec(ref, steps)
    published = stack.client.post(f"/v1/pipelines/{stack.owner}/chain{steps}", json=spec,
                                  headers=stack.auth)
    assert published.status_code in (200, 201), published.get_json()
    started = time.perf_counter()
    response = stack.client.post(f"/v1/pipelines/{stack.owner}/chain{steps}/runs",
                                 json={"input": {"name": "bench"}, "cache": False},
                                 headers=stack.auth)
    run_id = response.get_json()["id"]
    runs = PipelineStore(stack.redis, 3600)
    deadline = started + 600
    # A poll of the record's status (one HGET) every 5 ms: its end is seen a few ms late at
    # most, once per run, and the poll takes little CPU from the worker's (a tighter loop
    # would slow the very steps it times on a small host).
    while runs.status(run_id) is RunStatus.RUNNING and time.perf_counter() < deadline:
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    run = stack.client.get(f"/v1/pipeline-runs/{run_id}", headers=stack.auth).get_json()
    assert run["status"] == "succeeded", run
    records = [stack.get_job(step["job_id"]) for step in run["steps"]]
    ends.append((ms_between(run["created_at"], records[0]["created_at"]),
                 ms_between(records[-1]["finished_at"], run["finished_at"])))
    return elapsed, records


def plain_chain(stack: Stack, ref: str, steps: int) -> tuple[float, list[dict[str, Any]]]:
    jobs = JobStore(stack.redis, 3600)
    payload: Any = {"name": "bench"}
    ids = []
    started = time.perf_counter()
    for _ in range(steps):
        job = stack.post_job(ref, payload)
        done = jobs.wait_terminal(job["id"], 60)
        assert done is not None and done.status.value == "succeeded", done
        payload = done.output["greeting"]
        ids.append(job["id"])
    elapsed = time.perf_counter() - started
    return elapsed, [stack.get_job(job_id) for job_id in ids]


def gaps_ms(records: list[dict[str, Any]]) -> list[float]:
    """From each job's end to the next job's creation."""
    return [ms_between(before["finished_at"], after["created_at"])
            for before, after in zip(records, records[1:], strict=False)]


def durations_ms(records: list[dict[str, Any]]) -> list[float]:
    """Each job's own life: created to finished."""
    return [ms_between(record["created_at"], record["finished_at"]) for record in records]


def measure(steps: int, rounds: int, redis_url: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="algohost-pipeline-bench-") as tmp:
        stack = Stack(Path(tmp), owner="pipebench", node="pipebench",
                      ALGOHOST_REDIS_URL=redis_url)
        try:
            stack.start_worker()
            ref = publish(stack, EXAMPLES / "hello")
            plain_chain(stack, ref, 2)  # a warm container for both
            pipeline_s, plain_s, pipeline_gaps, plain_gaps = [], [], [], []
            ends: list[tuple[float, float]] = []
            pipeline_jobs: list[float] = []
            plain_jobs: list[float] = []
            for _ in range(rounds):
                seconds, records = plain_chain(stack, ref, steps)
                plain_s.append(seconds)
                plain_gaps += gaps_ms(records)
                plain_jobs += durations_ms(records)
                seconds, records = pipeline_chain(stack, ref, steps, ends)
                pipeline_s.append(seconds)
                pipeline_gaps += gaps_ms(records)
                pipeline_jobs += durations_ms(records)
        finally:
            stack.close()
    plain, pipeline = min(plain_s), min(pipeline_s)
    return {
        "steps": steps, "rounds": rounds,
        "plain_chain_s": round(plain, 3), "pipeline_chain_s": round(pipeline, 3),
        "plain_per_step_ms": round(plain / steps * 1000, 1),
        "pipeline_per_step_ms": round(pipeline / steps * 1000, 1),
        "overhead_per_step_ms": round((pipeline - plain) / steps * 1000, 1),
        "step_gap_p50_ms": {"plain": round(percentile(plain_gaps, 50), 1),
                            "pipeline": round(percentile(pipeline_gaps, 50), 1)},
        "step_gap_p99_ms": {"plain": round(percentile(plain_gaps, 99), 1),
                            "pipeline": round(percentile(pipeline_gaps, 99), 1)},
        "job_created_to_finished_p50_ms": {"plain": round(percentile(plain_jobs, 50), 1),
                                           "pipeline": round(percentile(pipeline_jobs, 50), 1)},
        "run_start_to_first_submit_ms": min(start for start, _ in ends),
        "last_step_end_to_run_end_ms": min(end for _, end in ends),
        "ratio_pipeline_over_plain": round(pipeline / plain, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="A database of the bench's own: it is emptied before and after")
    args = parser.parse_args()
    figures = measure(args.steps, args.rounds, args.redis_url)
    print(json.dumps(figures, indent=2))
    print(f"pipeline / plain jobs: {figures['ratio_pipeline_over_plain']:.2f}x "
          f"({figures['overhead_per_step_ms']:+.1f} ms per step; the gap from a step's end "
          f"to the next step's submit is {figures['step_gap_p50_ms']['pipeline']} ms p50 "
          f"against {figures['step_gap_p50_ms']['plain']} ms for a client)")


if __name__ == "__main__":
    main()
