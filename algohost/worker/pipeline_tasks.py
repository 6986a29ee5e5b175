"""The pipeline advance task: small and idempotent, on the calls queue next to the steps.

It is sent when a run starts, when one of its steps' jobs finishes, and by the reaper for a
run overdue for a check; whichever copy runs first moves the run, the others find nothing
to do.
"""

from __future__ import annotations

from algohost.dispatch import PIPELINE_TASK
from algohost.worker.app import celery
from algohost.worker.tasks import runtime


@celery.task(name=PIPELINE_TASK)
def advance_pipeline(run_id: str) -> None:
    runtime().pipelines.advance(run_id)
