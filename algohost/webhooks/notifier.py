"""Turning a job's or batch's event into a queued delivery: the one path the API and workers share.

It only records the delivery and enqueues its first attempt (or one whose message was
lost); it never sends anything itself, so a slow receiver can never hold up a job, a
batch or an API request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from algohost.public import public_batch, public_job, render
from algohost.store.batches import BatchRecord
from algohost.store.jobs import JobRecord
from algohost.store.webhooks import DeliveryRecord, WebhookStore
from algohost.webhooks import Event

# An attempt this late was never sent (the broker was down) or its worker died: well past
# the longest attempt (delivery.TIMEOUT_S in all), its in-flight mark (deliverer.in_flight_s)
# and an ordinary wait on the queue.
OVERDUE_GRACE_S = 60.0


class Enqueue(Protocol):
    def __call__(self, delivery_id: str, generation: int, attempt: int,
                 countdown_s: float = 0.0) -> None: ...


def job_subject(job_id: str) -> str:
    return f"job:{job_id}"


def batch_subject(batch_id: str) -> str:
    return f"batch:{batch_id}"


class WebhookNotifier:
    def __init__(self, store: WebhookStore, enqueue: Enqueue) -> None:
        self.store, self.enqueue = store, enqueue

    def notify(self, subject: str, owner: str, webhook: str | None, events: Sequence[str] | None,
               event: Event, body: Callable[[], str]) -> str | None:
        """Queue `event` for the subject's webhook, if it asked for it and it was not yet queued."""
        if not webhook or event not in (events or ()):
            return None
        delivery = self.store.create(subject, owner, event, webhook, body())
        if delivery is None:
            return None  # this event of this subject is already on its way
        self.enqueue(delivery.id, 0, 0)
        return delivery.id

    def job(self, record: JobRecord, event: Event) -> str | None:
        return self.notify(job_subject(record.id), record.owner, record.webhook,
                           record.webhook_events, event, lambda: render(public_job(record)))

    def batch(self, record: BatchRecord, counts: dict[str, int], event: Event) -> str | None:
        return self.notify(batch_subject(record.id), record.owner, record.webhook,
                           record.webhook_events, event,
                           lambda: render(public_batch(record, counts)))

    def redeliver(self, delivery_id: str) -> DeliveryRecord:
        """Attempt a delivery again from the start of the schedule, with the same webhook-id."""
        delivery = self.store.restart(delivery_id)
        self.enqueue(delivery_id, delivery.generation, delivery.attempts)
        return delivery

    def resend_overdue(self, grace_s: float = OVERDUE_GRACE_S,
                       now: float | None = None) -> list[str]:
        """Enqueue again each attempt still pending `grace_s` after it was due, with its own
        round and attempt numbers, so whichever copy comes second does nothing."""
        now = time.time() if now is None else now
        resent = []
        for delivery_id, generation, attempt in self.store.take_overdue(now - grace_s, now):
            self.enqueue(delivery_id, generation, attempt)
            resent.append(delivery_id)
        return resent


class WebhookHook:
    """The JobHook that queues `started` and `completed` deliveries of a job."""

    def __init__(self, notifier: WebhookNotifier) -> None:
        self.notifier = notifier

    def job_started(self, job: JobRecord) -> None:
        self.notifier.job(job, "started")

    def job_finished(self, job: JobRecord) -> None:
        self.notifier.job(job, "completed")
