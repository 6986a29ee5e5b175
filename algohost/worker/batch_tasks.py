"""The batch chunk task: runs in the calls worker, so chunks share its warm pool.

The fan-out itself is a Celery group sent by the API (one message per chunk); this
task only runs the chunk it is given.
"""

from __future__ import annotations

import threading

from algohost.store import connect
from algohost.store.batches import BatchStore
from algohost.worker.app import celery
from algohost.worker.batching import ChunkRunner
from algohost.worker.dispatch import BATCH_CHUNK_TASK
from algohost.worker.tasks import runtime
from algohost.worker.webhook_tasks import make_notifier

_runner: ChunkRunner | None = None
_lock = threading.Lock()


def chunk_runner() -> ChunkRunner:
    global _runner
    rt = runtime()
    with _lock:
        if _runner is None:
            batches = BatchStore(connect(rt.settings), rt.settings.job_retention_s)
            _runner = ChunkRunner(batches, rt.registry, rt.pool, rt.runner.secrets,
                                  make_notifier(rt.settings))
        return _runner


@celery.task(name=BATCH_CHUNK_TASK)
def run_batch_chunk(batch_id: str, start: int, stop: int) -> None:
    chunk_runner().run(batch_id, start, stop)
