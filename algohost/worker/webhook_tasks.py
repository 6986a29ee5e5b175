"""The webhook delivery task: one attempt per message, the next one sent with a countdown.

It runs on the `webhooks` queue, apart from calls, so a slow receiver never delays a
job; it needs neither Docker nor Flask.
"""

from __future__ import annotations

import threading
from typing import Any

from algohost.config import Settings
from algohost.dispatch import WEBHOOK_TASK, WEBHOOKS_QUEUE, CeleryDispatcher
from algohost.store import connect
from algohost.store.webhooks import WebhookStore
from algohost.webhooks.deliverer import Deliverer
from algohost.webhooks.delivery import HttpPoster
from algohost.webhooks.notifier import WebhookNotifier
from algohost.worker.app import celery

_deliverer: Deliverer | None = None
_lock = threading.Lock()


def make_notifier(settings: Settings) -> WebhookNotifier:
    store = WebhookStore(connect(settings), settings.job_retention_s)
    return WebhookNotifier(store, CeleryDispatcher(celery).enqueue_webhook)


def deliverer() -> Deliverer:
    global _deliverer
    with _lock:
        if _deliverer is None:
            settings: Settings = celery.conf.algohost_settings
            store = WebhookStore(connect(settings), settings.job_retention_s)
            _deliverer = Deliverer(store, HttpPoster(settings.webhook_allow_private),
                                   settings.webhook_schedule,
                                   owner_slots=settings.webhook_owner_slots,
                                   defer=CeleryDispatcher(celery).enqueue_webhook)
        return _deliverer


@celery.task(name=WEBHOOK_TASK, bind=True)
def deliver_webhook(self: Any, delivery_id: str, generation: int, attempt: int) -> None:
    delay = deliverer().attempt(delivery_id, generation, attempt)
    if delay is not None:
        self.apply_async(args=[delivery_id, generation, attempt + 1], countdown=delay,
                         queue=WEBHOOKS_QUEUE)
