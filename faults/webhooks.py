"""Rows about webhook deliveries: the webhook worker killed mid-delivery, and receivers that
are down, slow, or trickle a byte every 10 s, while another owner's receiver answers at once.

Receivers run in this process on 127.0.0.1 and count what reaches them: a duplicate is the
same webhook-id received twice with a 2xx answered, which is what a receiver would act on."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from faults.report import Row
from faults.stack import FaultStack, wait_until
from faults.watch import settle
from tests.receiver import Receiver

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class CountingReceiver(Receiver):
    """Answers after `delay_s`, or trickles its answer a byte per `trickle_s`, until `heal()`.
    Notes each request it reads in full — (job id, webhook-id, when) — before answering, as a
    receiver that acts on what it is sent would."""

    def __init__(self, delay_s: float = 0.0, trickle_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s, self.trickle_s = delay_s, trickle_s
        self.got: list[tuple[str, str, float]] = []
        self.healed = threading.Event()

    def heal(self) -> None:
        self.healed.set()

    def respond(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        with self._lock:
            self.got.append((str(json.loads(body).get("id")),
                             str(request.headers["webhook-id"]), time.monotonic()))
        try:
            if not self.healed.is_set() and self.trickle_s:
                for byte in ANSWER:
                    if self.healed.wait(self.trickle_s):
                        break  # healed mid-answer: the rest at once
                    request.wfile.write(bytes([byte]))
                    request.wfile.flush()
            elif not self.healed.is_set() and self.delay_s:
                self.healed.wait(self.delay_s)
            request.wfile.write(ANSWER)
            request.wfile.flush()
        except OSError:
            pass  # the sender hung up at its deadline
        request.close_connection = True

    def ids(self) -> Counter[str]:
        """How many times each webhook-id arrived."""
        with self._lock:
            return Counter(webhook_id for _, webhook_id, _ in self.got)

    def first_arrival(self) -> dict[str, float]:
        with self._lock:
            arrivals: dict[str, float] = {}
            for job_id, _, at in self.got:
                arrivals.setdefault(job_id, at)
            return arrivals

    def ids_per_job(self) -> dict[str, set[str]]:
        with self._lock:
            per_job: dict[str, set[str]] = {}
            for job_id, webhook_id, _ in self.got:
                per_job.setdefault(job_id, set()).add(webhook_id)
            return per_job


def undelivered(stack: FaultStack, job_ids: list[str]) -> list[str]:
    """Jobs whose completed event the platform has not recorded as delivered."""
    return [job_id for job_id in job_ids
            if not any(d["state"] == "delivered" for d in deliveries_of(stack, job_id))]


def deliveries_of(stack: FaultStack, job_id: str) -> list[dict[str, Any]]:
    reply = stack.client.get(f"/v1/jobs/{job_id}/webhooks", headers=stack.auth)
    return list(reply.get_json()["deliveries"]) if reply.status_code == 200 else []


def webhook_worker_mid_delivery(stack: FaultStack, refs: dict[str, str], jobs: int = 40) -> Row:
    row = Row("SIGKILL webhook worker mid-delivery", f"{jobs} completed events, receiver 1 s")
    receiver = CountingReceiver(delay_s=1.0).start()
    try:
        ids = [stack.submit(refs["hello"], f"w{n}", webhook=receiver.url)["id"]
               for n in range(jobs)]
        settle(stack, ids, 120)
        wait_until(lambda: len(receiver.ids()) >= jobs // 4, 120, "deliveries flowing", 0.05)
        killed_at = time.monotonic()
        stack.kill("worker-webhooks")
        stack.start_worker_for("webhooks")
        try:
            wait_until(lambda: not undelivered(stack, ids), 240, "every event delivered", 0.5)
        except RuntimeError:
            pass
        row.recovery_s = time.monotonic() - killed_at
        missing = undelivered(stack, ids)
        row.lost = len(missing)
        received = receiver.ids()
        row.duplicated = f"{sum(n - 1 for n in received.values())} received twice"
        row.outcome = f"{jobs - len(missing)} of {jobs} events delivered"
        row.note = ("attempts the killed worker held are sent again by the overdue sweep, "
                    "with the same webhook-id; one the receiver had already read arrives "
                    "twice (receivers deduplicate on webhook-id, as Standard Webhooks asks)")
    finally:
        receiver.stop()
    return row


def slow_receivers(stack: FaultStack, refs: dict[str, str], per_receiver: int = 4,
                   heal_after_s: float = 35.0) -> Row:
    """Receivers down, slow and trickling for one owner; a prompt one for another owner."""
    row = Row("webhook receivers down / slow (20 s) / trickling (1 B per 10 s)",
              f"{per_receiver} events each, healed after {heal_after_s:g} s; "
              f"{per_receiver * 2} events of another owner")
    slow = CountingReceiver(delay_s=20.0).start()
    trickling = CountingReceiver(trickle_s=10.0).start()
    prompt = CountingReceiver().start()
    down = CountingReceiver()  # not listening until healed
    receivers = {"down": down, "slow": slow, "trickling": trickling}
    try:
        jobs: dict[str, list[str]] = {name: [] for name in receivers}
        for name, receiver in receivers.items():
            for n in range(per_receiver):
                jobs[name].append(stack.submit(refs["hello"], f"{name}{n}",
                                               webhook=receiver.url)["id"])
        started = time.monotonic()
        other = stack.other_session()
        submitted_at: dict[str, float] = {}
        for n in range(per_receiver * 2):
            time.sleep(heal_after_s / (per_receiver * 2) / 2)
            reply = other.post(stack.url("/v1/jobs"), timeout=30,
                               json={"algorithm": refs["other_hello"], "input": f"o{n}",
                                     "webhook": prompt.url})
            reply.raise_for_status()
            submitted_at[reply.json()["id"]] = time.monotonic()
        wait_until(lambda: time.monotonic() - started >= heal_after_s, heal_after_s + 5, "heal")
        healed_at = time.monotonic()
        down.start()
        slow.heal()
        trickling.heal()
        everything = [job_id for ids in jobs.values() for job_id in ids]
        try:
            wait_until(lambda: not undelivered(stack, everything), 240,
                       "every event delivered after healing", 0.5)
        except RuntimeError:
            pass
        row.recovery_s = time.monotonic() - healed_at
        arrivals = prompt.first_arrival()
        row.lost = len(undelivered(stack, everything)) + sum(
            1 for job_id in submitted_at if job_id not in arrivals)
        every = (*receivers.values(), prompt)
        twice = sum(n - 1 for r in every for n in r.ids().values())
        changed = sum(1 for r in every for ids in r.ids_per_job().values() if len(ids) > 1)
        row.duplicated = f"{twice} received again"
        waits = [arrivals[job_id] - at for job_id, at in submitted_at.items()
                 if job_id in arrivals]
        row.outcome = (", ".join(f"{name} {len(ids) - len(undelivered(stack, ids))}/"
                                 f"{len(ids)}" for name, ids in jobs.items())
                       + f" delivered; {changed} events changed webhook-id; other owner "
                       f"{len(arrivals)}/{len(submitted_at)}, slowest "
                       f"{max(waits, default=float('nan')):.1f} s from submit")
        row.note = ("an attempt the receiver read but answered past the deadline counts as "
                    "failed and is sent again: 'received again'; the other owner's time runs "
                    "from submit to receipt, the call itself included")
    finally:
        for receiver in (*receivers.values(), prompt):
            receiver.stop()
    return row
