"""How work reaches the workers: task and queue names, the Celery app's routing, and the
`Dispatcher` seam that sends a message carrying only an id.

The API and the workers both send through this module, so the API never imports the
worker's code; unit tests use `RecordingDispatcher` instead of a broker.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from celery import Celery, group
from celery.utils.nodenames import anon_nodename
from kombu import Queue  # type: ignore[attr-defined]

from algohost.broker import TRANSPORT, transport_for
from algohost.config import Settings

RUN_TASK = "algohost.run_job"
BUILD_TASK = "algohost.build"
CALLS_QUEUE = "calls"
# Work beyond an owner's first few jobs under way (the rest of its slots, backlog
# hand-ons, retries, batch chunks) has a queue of its own, taken by workers that run at
# a lower CPU priority (`nice`): while one owner floods, the host's CPU goes first to the
# processes serving other owners' calls, not only the broker's next message.
BULK_QUEUE = "calls.bulk"
BUILDS_QUEUE = "builds"
WEBHOOK_TASK = "algohost.deliver_webhook"
BATCH_CHUNK_TASK = "algohost.run_batch_chunk"
WEBHOOKS_QUEUE = "webhooks"
REMOVE_IMAGE_TASK = "algohost.remove_image"
PIPELINE_TASK = "algohost.advance_pipeline"
SWEEP_TASK = "algohost.step_sweep"
PREWARM_TASK = "algohost.prewarm"
CLOSE_BUILD_COMMAND = "algohost_close_build"
QUEUES = (CALLS_QUEUE, BULK_QUEUE, BUILDS_QUEUE, WEBHOOKS_QUEUE)
# Broker priorities of the calls queues. Kombu's Redis transport keeps one list per step
# (`calls`, then `calls` + PRIORITY_SEP + step) and a worker takes from the lowest step
# first, so 0 is the most urgent. A job's step comes from its owner's fair share
# (`store.fairshare.priority_for`): an owner's first job is sent at URGENT, a flooding
# owner's at BULK (to BULK_QUEUE, see run_queue), so another owner's call never queues
# behind a flood.
PRIORITY_STEPS = (0, 3, 6, 9)
PRIORITY_SEP = "\x06\x16"
URGENT, BULK = PRIORITY_STEPS[0], PRIORITY_STEPS[-1]
TASK_MODULES = ["algohost.worker.tasks", "algohost.worker.webhook_tasks",
                "algohost.worker.batch_tasks", "algohost.worker.pipeline_tasks",
                "algohost.worker.sweep_tasks"]


def make_celery(settings: Settings) -> Celery:
    """The Celery app for sending and for working: broker, queues and routing in one place.

    Task modules are named, not imported: only a worker process loads them.
    """
    app = Celery("algohost", broker=settings.broker, include=TASK_MODULES)
    app.conf.update(
        broker_transport=transport_for(settings.broker),
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=CALLS_QUEUE,
        task_queues=[Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        task_routes={RUN_TASK: {"queue": CALLS_QUEUE}, BUILD_TASK: {"queue": BUILDS_QUEUE},
                     WEBHOOK_TASK: {"queue": WEBHOOKS_QUEUE},
                     BATCH_CHUNK_TASK: {"queue": BULK_QUEUE},
                     PIPELINE_TASK: {"queue": CALLS_QUEUE},
                     REMOVE_IMAGE_TASK: {"queue": BUILDS_QUEUE},
                     PREWARM_TASK: {"queue": CALLS_QUEUE},
                     SWEEP_TASK: {"queue": CALLS_QUEUE}},
        broker_connection_retry_on_startup=True,
        # The job record's lease, not the broker's visibility timeout, recovers
        # lost work; keep redelivery of long jobs rare.
        broker_transport_options={"visibility_timeout": 6 * 3600,
                                  "priority_steps": list(PRIORITY_STEPS)},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    app.conf.algohost_settings = settings
    return app


def run_queue(priority: int) -> str:
    """The queue a job sent at `priority` goes to: an owner's first five jobs under way
    (steps 0 and 3) to the calls queue, the rest to the bulk queue, so one owner's slow
    calls never hold every thread of the calls workers."""
    return CALLS_QUEUE if priority < PRIORITY_STEPS[2] else BULK_QUEUE


def list_key(queue: str, step: int) -> str:
    """The broker list that holds `queue`'s messages sent at priority `step`."""
    return queue if step == URGENT else f"{queue}{PRIORITY_SEP}{step}"


def queue_keys(queue: str) -> list[str]:
    """The broker lists that hold `queue`'s messages, one per priority step."""
    return [list_key(queue, step) for step in PRIORITY_STEPS]


# Where a run message sent at each priority step lands: its queue and that queue's list.
STEP_QUEUES = tuple(run_queue(step) for step in PRIORITY_STEPS)
STEP_LISTS = tuple(list_key(run_queue(step), step) for step in PRIORITY_STEPS)
# Left in a written run message for the store's script to fill in (no Lua pattern
# characters in either); the priority's token stands with its quotes for a number.
QUEUE_TOKEN = "@@algohostqueue@@"
PRIORITY_TOKEN = '"@@algohostpriority@@"'
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


@dataclass(frozen=True)
class RunMessages:
    """Run messages in Celery's protocol 2 as kombu's Redis transport sends them, to be
    pushed by the store's admission script in the same round trip that admits the job.

    Sending through `send_task` cost the API ~0.44 ms of Python and a round trip per
    submit, a third of its submit path. The script picks the priority step from the
    owner's slots, fills in the two tokens and pushes onto that step's list, exactly where
    kombu would have put it (tests compare the two messages field by field)."""

    origin: str
    reply_to: str

    @classmethod
    def for_app(cls, app: Celery) -> RunMessages | None:
        """None unless the broker is the store's own Redis through algohost's transport
        (a script can write only to the server, and database, that runs it)."""
        settings = app.conf.algohost_settings
        options = app.conf.broker_transport_options or {}
        if (app.conf.broker_transport != TRANSPORT or settings.broker != settings.redis_url
                or options.get("global_keyprefix")):
            return None
        return cls(origin=anon_nodename(), reply_to=str(app.thread_oid))

    def template(self, job_id: str) -> str:
        task_id = str(uuid.uuid4())
        body = json.dumps([[job_id], {}, _EMBED]).encode()
        return json.dumps({
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": RUN_TASK, "id": task_id, "shadow": None, "eta": None,
                "expires": None, "group": None, "group_index": None, "retries": 0,
                "timelimit": [None, None], "root_id": task_id, "parent_id": None,
                "argsrepr": repr([job_id]), "kwargsrepr": "{}", "origin": self.origin,
                "ignore_result": None, "replaced_task_nesting": 0, "stamped_headers": None,
                "stamps": {}},
            "properties": {
                "correlation_id": task_id, "reply_to": self.reply_to, "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE_TOKEN},
                "priority": PRIORITY_TOKEN.strip('"'), "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4())},
        })


class Dispatcher(Protocol):
    def enqueue_run(self, job_id: str, priority: int = BULK) -> None: ...

    def run_message(self, job_id: str) -> str | None: ...

    def enqueue_build(self, build_id: str) -> None: ...

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None: ...

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None: ...

    def retire_build(self, build_id: str) -> None: ...

    def enqueue_pipeline(self, run_id: str) -> None: ...

    def enqueue_sweep(self, sweep_id: str) -> None: ...


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app
        self.messages = RunMessages.for_app(app)

    def run_message(self, job_id: str) -> str | None:
        """A run message for the store's admission script to push (RunMessages), or None:
        then the job is sent by `enqueue_run` once admitted."""
        return None if self.messages is None else self.messages.template(job_id)

    def enqueue_run(self, job_id: str, priority: int = BULK) -> None:
        """Send a job; `priority` is a PRIORITY_STEPS step (URGENT first). Unless told,
        a job is sent at BULK: a backlog's job or a retry waits behind first calls."""
        self.app.send_task(RUN_TASK, args=[job_id], queue=run_queue(priority),
                           priority=priority)

    def enqueue_build(self, build_id: str) -> None:
        self.app.send_task(BUILD_TASK, args=[build_id], queue=BUILDS_QUEUE)

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None:
        self.app.send_task(WEBHOOK_TASK, args=[delivery_id, generation, attempt],
                           queue=WEBHOOKS_QUEUE, countdown=countdown_s or None)

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None:
        """One message per chunk, sent as a Celery group to the bulk queue, so a batch
        never stands in front of another owner's first call."""
        group(self.app.signature(BATCH_CHUNK_TASK, args=[batch_id, start, stop],
                                 queue=BULK_QUEUE, priority=BULK)
              for start, stop in chunks).apply_async()

    def retire_build(self, build_id: str) -> None:
        """Stop a deleted build's warm containers on every worker, then drop its image."""
        self.app.control.broadcast(CLOSE_BUILD_COMMAND, arguments={"build_id": build_id})
        self.app.send_task(REMOVE_IMAGE_TASK, args=[build_id], queue=BUILDS_QUEUE, countdown=5)

    def enqueue_pipeline(self, run_id: str) -> None:
        """Advance a pipeline run: a small task on the calls queue, next to its steps."""
        self.app.send_task(PIPELINE_TASK, args=[run_id], queue=CALLS_QUEUE)

    def enqueue_sweep(self, sweep_id: str) -> None:
        """A step of the sweep's controller."""
        self.app.send_task(SWEEP_TASK, args=[sweep_id], queue=CALLS_QUEUE)

    def enqueue_prewarm(self, build_id: str) -> None:
        """Start one warm container of a new build on whichever calls worker takes it."""
        self.app.send_task(PREWARM_TASK, args=[build_id], queue=CALLS_QUEUE)


class RecordingDispatcher:
    """Keeps what would have been sent; for tests without a broker."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.priorities: list[int] = []  # of each sent run, in order
        self.builds: list[str] = []
        self.webhooks: list[tuple[str, int, int, float]] = []
        self.batches: list[tuple[str, list[tuple[int, int]]]] = []
        self.retired: list[str] = []
        self.pipelines: list[str] = []
        self.sweeps: list[str] = []

    def enqueue_run(self, job_id: str, priority: int = BULK) -> None:
        self.runs.append(job_id)
        self.priorities.append(priority)

    def run_message(self, job_id: str) -> str | None:
        return None

    def enqueue_build(self, build_id: str) -> None:
        self.builds.append(build_id)

    def enqueue_webhook(self, delivery_id: str, generation: int, attempt: int,
                        countdown_s: float = 0.0) -> None:
        self.webhooks.append((delivery_id, generation, attempt, countdown_s))

    def enqueue_batch(self, batch_id: str, chunks: Sequence[tuple[int, int]]) -> None:
        self.batches.append((batch_id, list(chunks)))

    def retire_build(self, build_id: str) -> None:
        self.retired.append(build_id)

    def enqueue_pipeline(self, run_id: str) -> None:
        self.pipelines.append(run_id)

    def enqueue_sweep(self, sweep_id: str) -> None:
        self.sweeps.append(sweep_id)
