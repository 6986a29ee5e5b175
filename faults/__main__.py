"""`python -m faults` (what `make faults` runs): start the suite's own stack, run each fault
row, print the table, leave nothing behind. Exit status 1 when any row lost something."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from algohost.config import load_settings
from algohost.sandbox.egress import ensure_networks
from faults import services, webhooks, workers
from faults.fuzz import fuzz_row
from faults.report import Row, render
from faults.stack import Dockerd, FaultStack, Redis
from tests.stack import EXAMPLES, TEST_ALGORITHMS

NETWORKS = ("afault-calls", "afault-builds")
ROWS = ("mid-job", "mid-batch", "mid-build", "api", "webhook-worker", "receivers", "vault",
        "dockerd", "redis", "fuzz")
# Short leases and webhook schedules keep the run near 20 minutes; the behaviour measured
# is the same as with production values, only sooner.
STACK_ENV = {"ALGOHOST_LEASE_S": "10", "ALGOHOST_WEBHOOK_SCHEDULE_S": "1,2,4,8,15,30,30",
             "ALGOHOST_WORKER_CONCURRENCY": "8", "ALGOHOST_BATCH_CHUNK_SIZE": "200",
             "ALGOHOST_WEBHOOK_ALLOW_PRIVATE": "1",
             # Bridges are named after their networks: never reuse the shared engine's names.
             "ALGOHOST_CALLS_NETWORK": NETWORKS[0], "ALGOHOST_BUILDS_NETWORK": NETWORKS[1]}


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m faults", description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path("/tmp/algohost-faults"),
                        help="where the suite's Redis, dockerd, OpenBao and logs live")
    parser.add_argument("--redis-port", type=int, default=6415,
                        help="a spare port for the suite's own redis-server (AOF)")
    parser.add_argument("--only", nargs="*", choices=ROWS, default=list(ROWS),
                        help="run these rows only")
    parser.add_argument("--fuzz-examples", type=int, default=2000,
                        help="schemathesis examples per operation for the long fuzz run")
    parser.add_argument("--set", action="append", default=[], metavar="ALGOHOST_X=VALUE",
                        help="a setting for the suite's stack (e.g. to compare a row with "
                             "ALGOHOST_WEBHOOK_OWNER_SLOTS=0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    state: Path = args.state_dir
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    started = time.monotonic()
    shared = load_settings({})  # the engine the base image comes from: the default one
    redis, dockerd = Redis(state, args.redis_port), Dockerd(state)
    rows: list[Row] = []
    stack: FaultStack | None = None
    try:
        redis.start()
        dockerd.start()
        dockerd.load_image(shared.sandbox.base_image, shared.sandbox.docker_url)
        overrides = dict(item.split("=", 1) for item in args.set)
        stack = FaultStack(state, redis.url, dockerd.url, **{**STACK_ENV, **overrides})
        ensure_networks(stack.docker, stack.settings.sandbox)
        stack.start_workers()
        stack.start_api()
        refs = {"hello": stack.publish(EXAMPLES / "hello"),
                "sleeper": stack.publish(TEST_ALGORITHMS / "sleeper"),
                "secretreader": stack.publish(TEST_ALGORITHMS / "secretreader"),
                "other_hello": stack.publish_as_other(EXAMPLES / "hello")}
        name = refs["secretreader"].split("@")[0].split("/")[1]
        stack.http.put(stack.url(f"/v1/algorithms/{stack.owner}/{name}/secrets/TOKEN"),
                       data=b"faults-token", headers={"Content-Type": "text/plain"},
                       timeout=30).raise_for_status()
        print(f"stack ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        plan: dict[str, Callable[[], Row]] = {
            "mid-job": lambda: workers.calls_worker_mid_job(stack, refs),
            "mid-batch": lambda: workers.calls_worker_mid_batch(stack, refs),
            "mid-build": lambda: workers.builds_worker_mid_build(stack, EXAMPLES / "hello"),
            "api": lambda: workers.api_mid_submit(stack, refs),
            "webhook-worker": lambda: webhooks.webhook_worker_mid_delivery(stack, refs),
            "receivers": lambda: webhooks.slow_receivers(stack, refs),
            "vault": lambda: services.vault_down_and_back(stack, refs),
            "dockerd": lambda: services.dockerd_restart(stack, dockerd, refs),
            "redis": lambda: services.redis_restart(stack, redis, refs),
            "fuzz": lambda: fuzz_row(stack, args.fuzz_examples),
        }
        for name in args.only:
            began = time.monotonic()
            try:
                row = plan[name]()
            except Exception as exc:  # one broken row must not hide the others
                traceback.print_exc()
                row = Row(name, "-", outcome=f"the row itself failed: {exc}")
            print(f"[{time.monotonic() - began:5.0f} s] {render([row])}", file=sys.stderr)
            rows.append(row)
    finally:
        if stack is not None:
            stack.stop_processes()
            stack.close()
        dockerd.stop()
        dockerd.remove_bridge(*NETWORKS)
        redis.stop()
    print(render(rows))
    print(f"\n`make faults`: {len(rows)} rows in {(time.monotonic() - started) / 60:.1f} min")
    return 0 if all(row.ok or row.outcome == "skipped" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
