"""Rows where a service the workers depend on goes away under load and comes back: Redis
(killed, then restarted on its AOF), the Docker engine (restarted), Vault (hung, then back)."""

from __future__ import annotations

import os
import signal
import threading
import time

import requests

from algohost.dev.openbao import server_pid
from faults.report import Row
from faults.stack import Dockerd, FaultStack, Redis, wait_until
from faults.watch import describe, reasons, reruns, settle, statuses, wait_count


def redis_restart(stack: FaultStack, redis: Redis, refs: dict[str, str],
                  before_s: float = 4.0, down_s: float = 1.0, after_s: float = 3.0) -> Row:
    row = Row("Redis killed and restarted (AOF everysec)", "one client submitting non-stop")
    accepted: list[tuple[str, float]] = []
    refused = 0
    stop = threading.Event()

    def client() -> None:
        nonlocal refused
        session = requests.Session()
        session.headers.update(stack.http.headers)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                reply = session.post(stack.url("/v1/jobs"), timeout=10,
                                     json={"algorithm": refs["hello"], "input": f"r{n}"})
            except requests.RequestException:
                refused += 1
                time.sleep(0.05)
                continue
            if reply.status_code == 202:
                accepted.append((reply.json()["id"], time.monotonic()))
            else:
                refused += 1
                time.sleep(0.05)

    thread = threading.Thread(target=client)
    thread.start()
    time.sleep(before_s)
    killed_at = time.monotonic()
    redis.kill()
    time.sleep(down_s)
    redis.start()
    time.sleep(after_s)
    stop.set()
    thread.join(60)
    ids = [job_id for job_id, _ in accepted]
    final, _ = settle(stack, ids, 180)
    row.recovery_s = time.monotonic() - killed_at - down_s - after_s
    old = [job_id for job_id, at in accepted if at < killed_at - 1.0]
    last = [job_id for job_id, at in accepted if killed_at - 1.0 <= at < killed_at]
    after = [job_id for job_id, at in accepted if at >= killed_at]

    def lost(group: list[str]) -> int:
        return sum(1 for job_id in group if (final[job_id] or {}).get("status") != "succeeded")

    row.lost = lost(old) + lost(after)  # the last second alone may be lost
    row.load = f"one client submitting non-stop ({len(accepted)} accepted, {refused} refused)"
    row.outcome = (f"older than 1 s: {len(old)} accepted, {lost(old)} lost; last second: "
                   f"{len(last)} accepted, {lost(last)} lost; after restart: {len(after)} "
                   f"accepted, {lost(after)} lost; {describe(statuses(final))}")
    row.duplicated = f"{reruns(final)} re-run"
    row.note = ("`lost` counts jobs accepted more than a second before the kill or after the "
                "restart; AOF with appendfsync everysec may drop the last second, reported "
                "beside it. Jobs accepted after the restart but left queued would mean a worker "
                "stopped consuming when its broker connection dropped; the consumer watchdog "
                f"made the calls worker reconnect {watchdog_reconnects(stack)} times")
    return row


def watchdog_reconnects(stack: FaultStack) -> int:
    """Times the calls worker's consumer watchdog found its consumer stalled (its log)."""
    log = stack.state / "worker-calls.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return text.count("the broker consumer is stalled")


def dockerd_restart(stack: FaultStack, dockerd: Dockerd, refs: dict[str, str],
                    in_flight: int = 12) -> Row:
    row = Row("dockerd restarted", f"{in_flight} sleeper jobs (5 s) running in warm containers")
    for _ in range(3):  # warm containers exist before the engine goes
        job = stack.submit(refs["hello"], "warm")
        settle(stack, [job["id"]], 60)
    ids = [stack.submit(refs["sleeper"], 5)["id"] for _ in range(in_flight)]
    wait_count(stack, ids, "running", min(in_flight, stack.settings.sandbox.pool_max_total) // 2,
               120)
    restarted_at = time.monotonic()
    dockerd.stop()
    dockerd.start()

    def next_call_succeeds() -> bool:
        job = stack.submit(refs["hello"], "after")
        final, _ = settle(stack, [job["id"]], 60)
        return (final[job["id"]] or {}).get("status") == "succeeded"

    wait_until(next_call_succeeds, 180, "a call succeeding after the restart", 1.0)
    row.recovery_s = time.monotonic() - restarted_at
    final, _ = settle(stack, ids, 240)
    counts = statuses(final)
    stuck = sum(n for status, n in counts.items() if status in ("queued", "running", "missing"))
    row.lost = stuck
    why = dict(reasons(final, "failed"))
    row.outcome = f"in flight: {describe(counts)}" + (f" ({why})" if why else "") + \
        "; next call succeeded"
    row.duplicated = f"{reruns(final)} re-run"
    messages = sorted({str((job.get("error") or {}).get("message"))
                       for job in final.values() if job and job["status"] == "failed"})
    row.note = ("`lost` counts jobs left queued or running; a job that failed with its reason "
                "was answered, not lost. Their errors: " + "; ".join(messages))
    return row


def vault_down_and_back(stack: FaultStack, refs: dict[str, str], calls: int = 4) -> Row:
    row = Row("Vault hung (SIGSTOP) then back", f"{calls} calls needing a secret, {calls} not")
    pid = server_pid(stack.vault_dir)
    if pid is None:
        row.outcome, row.note = "skipped", "no OpenBao dev server (`bao` missing)"
        return row
    os.kill(pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        secret_ids = [stack.submit(refs["secretreader"], None)["id"] for _ in range(calls)]
        plain_ids = [stack.submit(refs["hello"], "no secrets")["id"] for _ in range(calls)]
        during, _ = settle(stack, secret_ids + plain_ids, 120)
    finally:
        os.kill(pid, signal.SIGCONT)
    back_at = time.monotonic()
    after_ids = [stack.submit(refs["secretreader"], None)["id"] for _ in range(calls)]
    after, _ = settle(stack, after_ids, 120)
    row.recovery_s = time.monotonic() - back_at
    secret_calls = {k: during[k] for k in secret_ids}
    codes = describe(statuses(secret_calls)) + f" {dict(reasons(secret_calls, 'failed'))}"
    plain = statuses({k: during[k] for k in plain_ids})
    later = statuses(after)
    stuck = sum(1 for job in [*during.values(), *after.values()]
                if job is None or job["status"] in ("queued", "running"))
    row.lost = stuck + (calls - later["succeeded"])
    row.outcome = (f"while hung: secret calls {codes}, others {describe(plain)}; "
                   f"after: {describe(later)}")
    row.duplicated = "0"
    row.note = (f"hung {back_at - stopped_at:.1f} s; `lost` counts calls left queued/running "
                "and calls after Vault came back that did not succeed")
    return row
