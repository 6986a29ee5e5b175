"""The batch chunk task: runs in the calls worker, so chunks share its warm pool.

The fan-out itself is a Celery group sent by the API (one message per chunk); this
task only runs the chunk it is given.
"""

from __future__ import annotations

from algohost.dispatch import BATCH_CHUNK_TASK
from algohost.worker.app import celery
from algohost.worker.tasks import runtime


@celery.task(name=BATCH_CHUNK_TASK)
def run_batch_chunk(batch_id: str, start: int, stop: int) -> None:
    runtime().chunks.run(batch_id, start, stop)
