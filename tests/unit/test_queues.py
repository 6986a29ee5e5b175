"""Which queue a job goes to, and which processes take each queue."""

from __future__ import annotations

from pathlib import Path

from algohost.config import Settings
from algohost.dev.commands import BULK_NICE, worker_argv, worker_specs
from algohost.dispatch import (
    BULK,
    BULK_QUEUE,
    CALLS_QUEUE,
    PRIORITY_STEPS,
    URGENT,
    run_queue,
)


def test_first_calls_go_to_the_calls_queue_and_bulk_work_to_its_own():
    assert [run_queue(step) for step in PRIORITY_STEPS] == [CALLS_QUEUE] * 2 + [BULK_QUEUE] * 2
    assert run_queue(URGENT) == CALLS_QUEUE and run_queue(BULK) == BULK_QUEUE


def test_dev_up_runs_a_niced_worker_for_the_bulk_queue_and_plain_ones_for_calls(tmp_path):
    specs = worker_specs(Settings(calls_workers=2))
    queues = [queue for _, queue, _ in specs]
    assert queues.count(CALLS_QUEUE) == 2 and queues.count(BULK_QUEUE) == 1
    for name, queue, threads in specs:
        argv = worker_argv(name, queue, threads, Path(tmp_path))
        niced = argv[:3] == ["nice", "-n", str(BULK_NICE)]
        assert niced is (queue == BULK_QUEUE), argv
        assert argv[argv.index("-Q") + 1] == queue
