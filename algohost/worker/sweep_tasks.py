"""The sweep controller's task: one step of one sweep, sent when a trial's job ends.

Runs in the calls worker; a step is idempotent, so a redelivered message is harmless.
"""

from __future__ import annotations

from algohost.dispatch import SWEEP_TASK
from algohost.worker.app import celery
from algohost.worker.tasks import runtime


@celery.task(name=SWEEP_TASK)
def step_sweep(sweep_id: str) -> None:
    runtime().sweeps.step(sweep_id)
