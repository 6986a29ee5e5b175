"""Reading outcomes back: jobs until they settle, batches until they finish, counts of both."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

TERMINAL = frozenset({"succeeded", "failed", "timed_out", "canceled"})


def read_job(stack: Any, job_id: str) -> dict[str, Any] | None:
    """The job as its owner sees it (None once it is unknown: lost)."""
    response = stack.client.get(f"/v1/jobs/{job_id}", headers=stack.auth)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise RuntimeError(f"GET /v1/jobs/{job_id}: {response.status_code} {response.data!r}")
    return dict(response.get_json())


def settle(stack: Any, job_ids: Iterable[str], timeout_s: float,
           interval_s: float = 0.5) -> tuple[dict[str, dict[str, Any] | None], float]:
    """Each job's last record once all are terminal (or the timeout passed), and when."""
    started = time.monotonic()
    pending = list(dict.fromkeys(job_ids))
    final: dict[str, dict[str, Any] | None] = {}
    while True:
        still = []
        for job_id in pending:
            job = read_job(stack, job_id)
            final[job_id] = job
            if job is not None and job["status"] not in TERMINAL:
                still.append(job_id)
        pending = still
        if not pending or time.monotonic() - started > timeout_s:
            return final, time.monotonic() - started
        time.sleep(interval_s)


def statuses(final: dict[str, dict[str, Any] | None]) -> Counter[str]:
    return Counter("missing" if job is None else str(job["status"]) for job in final.values())


def reruns(final: dict[str, dict[str, Any] | None]) -> int:
    """Executions beyond the first: each one started the algorithm again after a loss."""
    return sum(max(int(job.get("attempts") or 1) - 1, 0) for job in final.values() if job)


def reasons(final: dict[str, dict[str, Any] | None], status: str) -> Counter[str]:
    return Counter(str(job.get("reason")) for job in final.values()
                   if job and job["status"] == status)


def describe(counts: Counter[str]) -> str:
    return ", ".join(f"{n} {status}" for status, n in counts.most_common())


def wait_count(stack: Any, job_ids: list[str], status: str, at_least: int,
               timeout_s: float) -> int:
    """Poll until `at_least` of the jobs have `status`; returns how many had it."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = sum(1 for job_id in job_ids
                    if (job := read_job(stack, job_id)) and job["status"] == status)
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.2)
