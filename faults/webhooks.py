"""Rows about webhook deliveries: the webhook worker killed mid-delivery, and receivers that
are down, slow, or trickle a byte every 10 s, while another owner's receiver answers at once.

Receivers run in this process on 127.0.0.1 and count what reaches them: a duplicate is the
same webhook-id received twice with a 2xx answered, which is what a receiver would act on."""

from __future__ import annotations

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
    """Answers after `delay_s`, or trickles its answer a byte per `trickle_s`, until `heal()`;
    records (webhook-id, when) of each request it answered 2xx in full."""

    def __init__(self, delay_s: float = 0.0, trickle_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s, self.trickle_s = delay_s, trickle_s
        self.delivered: list[tuple[str, float]] = []
        self.healed = threading.Event()

    def heal(self) -> None:
        self.healed.set()

    def respond(self, request: BaseHTTPRequestHandler) -> None:
        request.rfile.read(int(request.headers.get("Content-Length") or 0))
        try:
            if not self.healed.is_set() and self.trickle_s:
                for byte in ANSWER:
                    if self.healed.wait(self.trickle_s):
                        return  # healed mid-answer: this one never completes
                    request.wfile.write(bytes([byte]))
                    request.wfile.flush()
            else:
                if not self.healed.is_set() and self.delay_s:
                    self.healed.wait(self.delay_s)
                request.wfile.write(ANSWER)
                request.wfile.flush()
        except OSError:
            return  # the sender hung up (its deadline): not delivered
        with self._lock:
            self.delivered.append((str(request.headers["webhook-id"]), time.monotonic()))
        request.close_connection = True

    def ids(self) -> Counter[str]:
        with self._lock:
            return Counter(webhook_id for webhook_id, _ in self.delivered)


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
            wait_until(lambda: len(receiver.ids()) >= jobs, 240, "every event delivered", 0.2)
        except RuntimeError:
            pass
        row.recovery_s = time.monotonic() - killed_at
        received = receiver.ids()
        row.lost = jobs - len(received)
        row.duplicated = f"{sum(n - 1 for n in received.values())} received twice"
        row.outcome = f"{len(received)} of {jobs} events delivered"
        row.note = ("attempts the killed worker held are sent again by the overdue sweep, "
                    "with the same webhook-id; one the receiver had already answered arrives "
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
        submitted_at: dict[str, float] = {}
        for name, receiver in receivers.items():
            for n in range(per_receiver):
                stack.submit(refs["hello"], f"{name}{n}", webhook=receiver.url)
        started = time.monotonic()
        other = stack.other_session()
        others = []
        for n in range(per_receiver * 2):
            time.sleep(heal_after_s / (per_receiver * 2) / 2)
            reply = other.post(stack.url("/v1/jobs"), timeout=30,
                               json={"algorithm": refs["other_hello"], "input": f"o{n}",
                                     "webhook": prompt.url})
            reply.raise_for_status()
            others.append(reply.json()["id"])
            submitted_at[reply.json()["id"]] = time.monotonic()
        wait_until(lambda: time.monotonic() - started >= heal_after_s, heal_after_s + 5, "heal")
        healed_at = time.monotonic()
        down.start()
        slow.heal()
        trickling.heal()
        expected = per_receiver * len(receivers)
        try:
            wait_until(lambda: sum(len(r.ids()) for r in receivers.values()) >= expected, 240,
                       "every event delivered after healing", 0.2)
        except RuntimeError:
            pass
        row.recovery_s = time.monotonic() - healed_at
        delivered = {name: r.ids() for name, r in receivers.items()}
        row.lost = expected - sum(len(ids) for ids in delivered.values()) + (
            len(others) - len(prompt.ids()))
        twice = sum(n - 1 for ids in [*delivered.values(), prompt.ids()] for n in ids.values())
        row.duplicated = f"{twice} received twice"
        waits = sorted(at - submitted_at.get(_job_of(stack, others, wid), at)
                       for wid, at in prompt.delivered)
        row.outcome = (", ".join(f"{name} {len(ids)}/{per_receiver}"
                                 for name, ids in delivered.items())
                       + f"; other owner {len(prompt.ids())}/{len(others)}, slowest "
                       f"{waits[-1] if waits else float('nan'):.1f} s from submit")
        row.note = ("each event keeps its webhook-id across attempts; the other owner's time "
                    "is from submit to receipt (the call itself included)")
    finally:
        for receiver in (*receivers.values(), prompt):
            receiver.stop()
    return row


def _job_of(stack: FaultStack, job_ids: list[str], webhook_id: str) -> str:
    for job_id in job_ids:
        if any(d["id"] == webhook_id for d in deliveries_of(stack, job_id)):
            return job_id
    return ""

