"""How the API hands work to the workers: a Celery message carrying only an id.

The API depends on this small seam, not on the worker's code, so it stays thin
and unit tests can use `RecordingDispatcher` instead of a broker.
"""

from __future__ import annotations

from typing import Protocol

from celery import Celery

RUN_TASK = "algohost.run_job"
BUILD_TASK = "algohost.build"
CALLS_QUEUE = "calls"
BUILDS_QUEUE = "builds"


class Dispatcher(Protocol):
    def enqueue_run(self, job_id: str) -> None: ...

    def enqueue_build(self, build_id: str) -> None: ...


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def enqueue_run(self, job_id: str) -> None:
        self.app.send_task(RUN_TASK, args=[job_id], queue=CALLS_QUEUE)

    def enqueue_build(self, build_id: str) -> None:
        self.app.send_task(BUILD_TASK, args=[build_id], queue=BUILDS_QUEUE)


class RecordingDispatcher:
    """Keeps what would have been sent; for tests without a broker."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.builds: list[str] = []

    def enqueue_run(self, job_id: str) -> None:
        self.runs.append(job_id)

    def enqueue_build(self, build_id: str) -> None:
        self.builds.append(build_id)
