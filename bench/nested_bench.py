"""A nested call against a direct one: `algohost_runtime.call()` overhead, as a ratio.

Starts a stack of its own (a worker with two threads, the API in-process) on the Redis
database ALGOHOST_TEST_STACK_REDIS_URL names, publishes tests/algorithms/hello and
tests/algorithms/nested, warms both, then times synchronous calls in turn:
  direct  -- POST /v1/jobs of OWNER/hello, Prefer: wait
  nested  -- POST /v1/jobs of OWNER/nested, whose code calls OWNER/hello through the worker
and prints p50/p90 of each, the ratio nested/direct and the overhead in milliseconds.

    python -m bench.nested_bench [--calls 40]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.stats import percentile
from tests.stack import TEST_ALGORITHMS, Stack, publish


def timed_call(stack: Stack, ref: str, payload: Any) -> float:
    started = time.perf_counter()
    response = stack.client.post("/v1/jobs", json={"algorithm": ref, "input": payload},
                                 headers={**stack.auth, "Prefer": "wait=60"})
    elapsed = (time.perf_counter() - started) * 1000.0
    job = response.get_json()
    if response.status_code != 200 or job["status"] != "succeeded":
        raise RuntimeError(f"{ref} did not succeed: {json.dumps(job)[:500]}")
    return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(samples, 50), 2),
            "p90_ms": round(percentile(samples, 90), 2)}


def run(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="algohost-nested-bench-") as tmp:
        stack = Stack(Path(tmp), owner="nestbench", node="nestbench")
        try:
            stack.start_worker(concurrency=2)
            hello = publish(stack, TEST_ALGORITHMS / "hello")
            nested = publish(stack, TEST_ALGORITHMS / "nested")
            inner = {"target": hello, "payload": "x"}
            for _ in range(5):  # warm containers for both, and for the child's build
                timed_call(stack, hello, "x")
                timed_call(stack, nested, inner)
            direct, via = [], []
            for _ in range(calls):
                direct.append(timed_call(stack, hello, "x"))
                via.append(timed_call(stack, nested, inner))
        finally:
            stack.close()
    result = {"calls": calls, "direct": summary(direct), "nested": summary(via)}
    result["ratio_p50"] = round(result["nested"]["p50_ms"] / result["direct"]["p50_ms"], 2)
    result["overhead_p50_ms"] = round(result["nested"]["p50_ms"] - result["direct"]["p50_ms"],
                                      2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40)
    result = run(parser.parse_args().calls)
    print(json.dumps(result, indent=2))
    print(f"nested/direct p50 ratio: {result['ratio_p50']} "
          f"({result['nested']['p50_ms']} ms vs {result['direct']['p50_ms']} ms, "
          f"+{result['overhead_p50_ms']} ms per nested call)")


if __name__ == "__main__":
    main()
