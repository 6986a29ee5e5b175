"""`python -m bench.sweep_bench`: a sweep's wall time against plain jobs doing the same work,
measured in the same run on a stack of the bench's own.

The work is N calls of tests/algorithms/quadratic (each sleeping --work-s): once as a
sweep of N trials (TPE by default, `parallelism` in flight), and once as the same N
inputs (the sweep's own trials' parameters) sent as plain jobs by a client that keeps
`parallelism` in flight, each waited on through its done list. Also shown: the same N
jobs sent all at once (the stack's ceiling), and the gap from a trial's end to the next
trial's submit, read from the job records (the controller's latency: job hook, step
message, lock, rebuilding the study and asking it, submit). Needs Redis, Docker and the
base image; it starts its own worker on a Redis database of its own (--redis-url, default
db 12), which it empties.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from algohost.clock import ms_between
from algohost.store import connect
from algohost.store.jobs import JobStore
from algohost.store.sweeps import SweepStatus, SweepStore
from bench.stats import percentile
from tests.stack import TEST_ALGORITHMS, Stack, publish

REDIS_URL = "redis://127.0.0.1:6379/12"
SPACE = {"x": {"type": "float", "low": -5.0, "high": 8.0},
         "y": {"type": "float", "low": -4.0, "high": 4.0}}


def run_sweep(stack: Stack, ref: str, trials: int, parallelism: int, strategy: str,
              fixed: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
    started = time.perf_counter()
    response = stack.client.post("/v1/sweeps", headers=stack.auth, json={
        "algorithm": ref, "strategy": strategy, "seed": 1, "space": SPACE, "input": fixed,
        "budget": {"trials": trials, "parallelism": parallelism},
        "objective": {"key": "score"}})
    assert response.status_code == 202, response.get_json()
    sweep_id = response.get_json()["id"]
    sweeps = SweepStore(stack.redis, 3600)
    deadline = started + 1800
    # One HGET per millisecond or two: the end is seen as soon as the record says so.
    while time.perf_counter() < deadline:
        record = sweeps.get(sweep_id)
        if record is not None and record.status is not SweepStatus.RUNNING:
            break
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    sweep = stack.client.get(f"/v1/sweeps/{sweep_id}", headers=stack.auth).get_json()
    assert sweep["status"] == "completed" and sweep["counts"]["succeeded"] == trials, sweep
    return elapsed, sorted(sweep["trials"], key=lambda trial: trial["number"])


def run_plain(stack: Stack, ref: str, inputs: list[dict[str, Any]], in_flight: int) -> float:
    """The inputs as plain jobs, `in_flight` at a time, each waited on to its end."""
    jobs = JobStore(connect(stack.settings), 3600)  # read timeouts that outlast a wait

    def one(payload: dict[str, Any]) -> None:
        job = stack.post_job(ref, payload)
        done = jobs.wait_terminal(job["id"], 120)
        assert done is not None and done.status.value == "succeeded", done

    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, inputs))
    return time.perf_counter() - started


def trial_gaps_ms(stack: Stack, trials: list[dict[str, Any]], parallelism: int) -> list[float]:
    """From the end of the trial that freed a slot to the creation of the trial after the
    first `parallelism` (which start together)."""
    records = [stack.get_job(trial["job"]) for trial in trials]
    ends = sorted(record["finished_at"] for record in records)
    return [ms_between(end, record["created_at"])
            for end, record in zip(ends, records[parallelism:], strict=False)]


def measure(trials: int, parallelism: int, strategy: str, rounds: int,
            work_s: float, redis_url: str) -> dict[str, Any]:
    fixed = {"sleep_s": work_s} if work_s else {}
    with tempfile.TemporaryDirectory(prefix="algohost-sweep-bench-") as tmp:
        stack = Stack(Path(tmp), owner="sweepbench", node="sweepbench",
                      ALGOHOST_REDIS_URL=redis_url)
        try:
            stack.start_worker(concurrency=max(4, parallelism))
            ref = publish(stack, TEST_ALGORITHMS / "quadratic")
            run_plain(stack, ref, [{}] * parallelism, parallelism)  # warm containers
            sweep_s, plain_s, burst_s, gaps = [], [], [], []
            for _ in range(rounds):
                seconds, done = run_sweep(stack, ref, trials, parallelism, strategy, fixed)
                sweep_s.append(seconds)
                gaps += trial_gaps_ms(stack, done, parallelism)
                inputs = [{**fixed, **trial["params"]} for trial in done]
                plain_s.append(run_plain(stack, ref, inputs, parallelism))
                burst_s.append(run_plain(stack, ref, inputs, len(inputs)))
        finally:
            stack.close()
    sweep, plain, burst = min(sweep_s), min(plain_s), min(burst_s)
    return {
        "trials": trials, "parallelism": parallelism, "strategy": strategy, "rounds": rounds,
        "work_s": work_s,
        "sweep_s": round(sweep, 3), "plain_jobs_same_parallelism_s": round(plain, 3),
        "plain_jobs_all_at_once_s": round(burst, 3),
        "sweep_per_trial_ms": round(sweep / trials * 1000, 1),
        "plain_per_job_ms": round(plain / trials * 1000, 1),
        "next_trial_gap_p50_ms": round(percentile(gaps, 50), 1),
        "next_trial_gap_p99_ms": round(percentile(gaps, 99), 1),
        "ratio_sweep_over_plain": round(sweep / plain, 3),
        "ratio_sweep_over_all_at_once": round(sweep / burst, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--strategy", choices=("random", "tpe"), default="tpe")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Take the best of this many (the first pays for imports)")
    parser.add_argument("--work-s", type=float, default=0.0,
                        help="Seconds each call sleeps, as a real trial would work")
    parser.add_argument("--redis-url", default=REDIS_URL,
                        help="A database of the bench's own: it is emptied before and after")
    args = parser.parse_args()
    figures = measure(args.trials, args.parallelism, args.strategy, args.rounds, args.work_s,
                      args.redis_url)
    print(json.dumps(figures, indent=2))
    print(f"{args.trials}-trial sweep / {args.trials} plain jobs: "
          f"{figures['ratio_sweep_over_plain']:.2f}x ({figures['sweep_s']} s against "
          f"{figures['plain_jobs_same_parallelism_s']} s at {args.parallelism} in flight; "
          f"a freed slot gets its next trial in {figures['next_trial_gap_p50_ms']} ms p50)")


if __name__ == "__main__":
    main()
