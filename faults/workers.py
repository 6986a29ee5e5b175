"""Rows where a process dies by SIGKILL under load: a calls worker mid-job and mid-batch, the
builds worker mid-build, the API mid-submit. A supervisor restarts each at once, as systemd
or an orchestrator would; what the suite measures is what the platform does after that."""

from __future__ import annotations

import re
import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import requests

from algohost.archive import make_archive
from algohost.store.batches import BatchStore
from algohost.store.registry import Registry
from faults.report import Row
from faults.stack import FaultStack, wait_until
from faults.watch import describe, reasons, reruns, settle, statuses, wait_count

JOBS_IN_FLIGHT = 300
BATCH_INPUTS = 10_000


def calls_worker_mid_job(stack: FaultStack, refs: dict[str, str]) -> Row:
    row = Row("SIGKILL calls worker mid-job", f"{JOBS_IN_FLIGHT} sleeper jobs (0.3 s each)")
    ids = [stack.submit(refs["sleeper"], 0.3)["id"] for _ in range(JOBS_IN_FLIGHT)]
    wait_count(stack, ids, "succeeded", JOBS_IN_FLIGHT // 5, 120)
    killed_at = time.monotonic()
    stack.kill("worker-calls")
    stack.start_worker_for("calls")
    final, _ = settle(stack, ids, 300)
    row.recovery_s = time.monotonic() - killed_at
    counts = statuses(final)
    row.lost = JOBS_IN_FLIGHT - counts["succeeded"]
    row.outcome = describe(counts)
    row.duplicated = f"{reruns(final)} re-run"
    row.note = ("jobs the killed worker held ran again once their lease expired "
                f"(lease {stack.settings.lease_s} s); 're-run' counts executions started again, "
                "an upper bound on side effects done twice")
    if row.lost:
        row.note += f"; not succeeded: {describe(counts - Counter(succeeded=counts['succeeded']))}"
    return row


def calls_worker_mid_batch(stack: FaultStack, refs: dict[str, str]) -> Row:
    row = Row("SIGKILL calls worker mid-batch", f"one batch of {BATCH_INPUTS:,} inputs")
    response = stack.http.post(stack.url("/v1/batches"), timeout=60, json={
        "algorithm": refs["hello"], "inputs": [f"n{i}" for i in range(BATCH_INPUTS)]})
    response.raise_for_status()
    batch_id = response.json()["id"]

    def batch() -> dict[str, Any]:
        reply = stack.http.get(stack.url(f"/v1/batches/{batch_id}"), timeout=30)
        reply.raise_for_status()
        return dict(reply.json())

    wait_until(lambda: float(batch()["progress"]) >= 0.25, 300, "a quarter of the batch done",
               interval_s=0.2)
    killed_at = time.monotonic()
    stack.kill("worker-calls")
    stack.start_worker_for("calls")
    wait_until(lambda: batch()["status"] != "running", 600, "the batch finishing", 0.5)
    row.recovery_s = time.monotonic() - killed_at
    record = batch()
    counts = {str(k): int(v) for k, v in (record.get("counts") or {}).items()}
    row.lost = BATCH_INPUTS - counts.get("succeeded", 0)
    row.outcome = f"batch {record['status']}: " + ", ".join(
        f"{n} {status}" for status, n in sorted(counts.items()) if n)
    chunk_attempts: dict[Any, Any] = stack.redis.hgetall(BatchStore.chunks_key(batch_id))
    rerun_inputs = 0
    for span, attempts in chunk_attempts.items():
        start, stop = span.split(":")
        rerun_inputs += (int(stop) - int(start)) * (int(attempts) - 1)
    row.duplicated = f"<= {rerun_inputs} inputs re-run"
    row.note = ("a chunk the killed worker held is taken over once its lease expires; inputs "
                "already recorded are skipped, so re-runs are at most the chunk's unfinished "
                "inputs (the figure is the whole chunks re-claimed)")
    return row


def builds_worker_mid_build(stack: FaultStack, example: Path) -> Row:
    row = Row("SIGKILL builds worker mid-build", "one build of a new algorithm")
    name = "faultbuild"
    source = stack.state / name
    shutil.copytree(example, source, dirs_exist_ok=True)
    manifest = source / "algorithm.toml"
    manifest.write_text(re.sub(r'(?m)^name = ".*"$', f'name = "{name}"', manifest.read_text()))
    response = stack.client.post(f"/v1/algorithms/{stack.owner}/{name}/versions",
                                 data=make_archive(source),
                                 headers={**stack.auth, "Content-Type": "application/gzip"})
    build = response.get_json()["build"]
    path = f"/v1/algorithms/{stack.owner}/{name}/versions/{build['version']}"

    def status() -> str:
        return str(stack.client.get(path, headers=stack.auth).get_json()["status"])

    wait_until(lambda: status() == "building", 120, "the build starting", 0.05)
    killed_at = time.monotonic()
    stack.kill("worker-builds")
    stack.start_worker_for("builds")
    try:
        wait_until(lambda: status() not in ("queued", "building"), 240, "the build settling", 0.5)
    except RuntimeError:
        row.outcome, row.lost = f"still {status()} after 240 s", 1
        row.note = "the build record never left `building`: nothing took over the killed build"
        return row
    row.recovery_s = time.monotonic() - killed_at
    final = stack.client.get(path, headers=stack.auth).get_json()
    row.outcome = f"build {final['status']}" + (f" ({final.get('error')})"
                                               if final["status"] != "succeeded" else "")
    row.lost = 0 if final["status"] == "succeeded" else 1
    attempts = max(Registry(stack.redis).get_build(build["id"]).attempts, 1)
    row.duplicated = f"{attempts - 1} rebuilt"
    row.note = ("the killed build's lease expired and the reaper queued it again "
                f"(lease {stack.settings.lease_s} s); a build is deterministic, so building "
                "twice has no side effect beyond the time")
    return row


def api_mid_submit(stack: FaultStack, refs: dict[str, str], clients: int = 6,
                   per_client: int = 25) -> Row:
    row = Row("SIGKILL API mid-submit",
              f"{clients} clients x {per_client} jobs, retrying with an Idempotency-Key")
    accepted: dict[str, str] = {}  # input -> job id the client was told
    errors = Counter[str]()
    lock = threading.Lock()

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(stack.http.headers)
        for i in range(per_client):
            payload = f"api-{n}-{i}"
            key = {"Idempotency-Key": str(uuid.uuid4())}  # one per submit, kept across retries
            while True:
                try:
                    reply = session.post(stack.url("/v1/jobs"), timeout=10, headers=key,
                                         json={"algorithm": refs["hello"], "input": payload})
                except requests.RequestException as exc:
                    with lock:
                        errors[type(exc).__name__] += 1
                    time.sleep(0.2)
                    continue
                if reply.status_code in (200, 202):
                    with lock:
                        accepted[payload] = reply.json()["id"]
                    break
                with lock:
                    errors[f"HTTP {reply.status_code}"] += 1
                time.sleep(0.2)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(accepted) >= clients * per_client // 4, 120, "submissions flowing",
               0.01)
    killed_at = time.monotonic()
    stack.kill("api")
    stack.start_api()
    for thread in threads:
        thread.join(300)
    final, _ = settle(stack, accepted.values(), 240)
    row.recovery_s = time.monotonic() - killed_at
    counts = statuses(final)
    row.lost = len(accepted) - counts["succeeded"]
    listed = stack.http.get(stack.url("/v1/jobs"), params={"limit": "200", "include": "input"},
                            timeout=30).json()["jobs"]
    made = Counter(str(job.get("input")) for job in listed
                   if str(job.get("input", "")).startswith("api-"))
    extra = sum(n - 1 for n in made.values() if n > 1)
    row.outcome = f"{len(accepted)} accepted: {describe(counts)}; client errors: " + (
        ", ".join(f"{n} {kind}" for kind, n in errors.most_common()) or "none")
    row.duplicated = f"{extra} jobs made twice"
    row.note = ("a submit whose reply died with the API may have been stored; the client, not "
                "knowing, submits again under the same Idempotency-Key and gets that job back: "
                "'made twice' counts the jobs the keys failed to deduplicate")
    if reasons(final, "failed"):
        row.note += f"; failed: {dict(reasons(final, 'failed'))}"
    return row
