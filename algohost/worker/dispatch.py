"""How the API hands work to the workers: a Celery message carrying only an id.

The API depends on this small seam, not on the worker's code, so it stays thin
and unit tests can use `RecordingDispatcher` instead of a broker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from celery import Celery, group

RUN_TASK = "algohost.run_job"
BUILD_TASK = "algohost.build"
CALLS_QUEUE = "calls"
BUILDS_QUEUE = "builds"
WEBHOOK_TASK = "algohost.deliver_webhook"
BATCH_CHUNK_TASK = "algohost.run_batch_chunk"
WEBHOOKS_QUEUE = "webhooks"
REMOVE_IMAGE_TASK = "algohost.remove_image"
CLOSE_BUILD_COMMAND = "algohost_close_build"


class Dispatcher(Protocol):
    def enqueue_run(self, job_id: str) -> None: ...

    def enqueue_build(self, build_id: str) -> None: ...

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None: ...

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None: ...

    def retire_build(self, build_id: str) -> None: ...


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue_run(self, job_id: str) -> None:
        self.app.send_task(RUN_TASK, args=[job_id], queue=CALLS_QUEUE)

    def enqueue_build(self, build_id: str) -> None:
        self.app.send_task(BUILD_TASK, args=[build_id], queue=BUILDS_QUEUE)

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None:
        self.app.send_task(WEBHOOK_TASK, args=[delivery_id, generation, attempt],
                           queue=WEBHOOKS_QUEUE, countdown=countdown_s or None)

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None:
        """One message per chunk, sent as a Celery group; chunks share the calls queue."""
        group(self.app.signature(BATCH_CHUNK_TASK, args=[batch_id, start, stop],
                                 queue=CALLS_QUEUE)
              for start, stop in chunks).apply_async()

    def retire_build(self, build_id: str) -> None:
        """Stop a deleted build's warm containers on every worker, then drop its image."""
        self.app.control.broadcast(CLOSE_BUILD_COMMAND, arguments={"build_id": build_id})
        self.app.send_task(REMOVE_IMAGE_TASK, args=[build_id], queue=BUILDS_QUEUE, countdown=5)


class RecordingDispatcher:
    """Keeps what would have been sent; for tests without a broker."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.builds: list[str] = []
        self.webhooks: list[tuple[str, int, int, float]] = []
        self.batches: list[tuple[str, list[tuple[int, int]]]] = []
        self.retired: list[str] = []

    def enqueue_run(self, job_id: str) -> None:
        self.runs.append(job_id)

    def enqueue_build(self, build_id: str) -> None:
        self.builds.append(build_id)

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None:
        self.webhooks.append((delivery_id, generation, attempt, countdown_s))

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None:
        self.batches.append((batch_id, list(chunks)))

    def retire_build(self, build_id: str) -> None:
        self.retired.append(build_id)
