"""The Celery application: broker settings, queues and routing, in one place.

`celery -A algohost.worker.app:celery worker -P threads` runs it; the threads
pool fits because the work happens in containers and the worker only waits.
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue  # type: ignore[attr-defined]

from algohost.config import Settings, load_settings
from algohost.worker.dispatch import (
    BATCH_CHUNK_TASK,
    BUILD_TASK,
    BUILDS_QUEUE,
    CALLS_QUEUE,
    REMOVE_IMAGE_TASK,
    RUN_TASK,
    WEBHOOK_TASK,
    WEBHOOKS_QUEUE,
)


def make_celery(settings: Settings) -> Celery:
    app = Celery("algohost", broker=settings.broker,
                 include=["algohost.worker.tasks", "algohost.worker.webhook_tasks",
                          "algohost.worker.batch_tasks"])
    app.conf.update(
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CALLS_QUEUE,
        task_queues=[Queue(CALLS_QUEUE), Queue(BUILDS_QUEUE), Queue(WEBHOOKS_QUEUE)],
        task_routes={RUN_TASK: {"queue": CALLS_QUEUE}, BUILD_TASK: {"queue": BUILDS_QUEUE},
                     WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE},
                     BATCH_CHUNK_TASK: {"queue": CALLS_QUEUE},
                     REMOVE_IMAGE_TASK: {"queue": BUILDS_QUEUE}},
        broker_connection_retry_on_startup=True,
        # The job record's lease, not the broker's visibility timeout, recovers
        # lost work; keep redelivery of long jobs rare.
        broker_transport_options={"visibility_timeout": 6 * 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    app.conf.algohost_settings = settings
    return app


celery = make_celery(load_settings())
