"""Which queue a job goes to, and which processes take each queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from algohost.config import Settings
from algohost.dev import stack
from algohost.dev.commands import (
    BULK_NICE,
    MAX_WORKERS_PER_QUEUE,
    nice_bulk_sessions,
    parts,
    worker_argv,
    worker_specs,
)
from algohost.dev.stack import nice_session
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


def test_dev_up_runs_niced_workers_for_the_bulk_queue_and_plain_ones_for_calls(tmp_path):
    specs = worker_specs(Settings(calls_workers=2, bulk_workers=3))
    queues = [queue for _, queue, _ in specs]
    assert queues.count(CALLS_QUEUE) == 2 and queues.count(BULK_QUEUE) == 3
    assert len({name for name, _, _ in specs}) == len(specs)
    for name, queue, threads in specs:
        argv = worker_argv(name, queue, threads, Path(tmp_path))
        niced = argv[:3] == ["nice", "-n", str(BULK_NICE)]
        assert niced is (queue == BULK_QUEUE), argv
        assert argv[argv.index("-Q") + 1] == queue


def test_bulk_workers_default_to_one_per_core_within_the_cap(monkeypatch):
    for cores, expected in ((1, 1), (2, 2), (64, MAX_WORKERS_PER_QUEUE)):
        monkeypatch.setattr("os.cpu_count", lambda cores=cores: cores)
        queues = [queue for _, queue, _ in worker_specs(Settings())]
        assert queues.count(BULK_QUEUE) == expected
        assert queues.count(CALLS_QUEUE) == 1  # calls: one unless asked


def test_a_session_of_its_own_is_niced_as_a_group(tmp_path):
    """Each part `dev up` starts leads its own session; where the kernel shares the CPU
    between sessions first, the session's group must be niced, not only the process."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             start_new_session=True)
    try:
        group = Path(f"/proc/{child.pid}/autogroup")
        if group.exists():
            assert nice_session(child.pid, 7)
            assert group.read_text().split()[-1] == "7"
            assert Path("/proc/self/autogroup").read_text() != group.read_text()  # not ours
        else:  # no autogroups in this kernel: a process's own nice is what counts
            assert not nice_session(child.pid, 7)
    finally:
        child.kill()
        child.wait()


def test_dev_up_nices_the_session_group_of_bulk_workers_only(tmp_path):
    specs = worker_specs(Settings(calls_workers=1, bulk_workers=2))
    all_parts = parts(tmp_path)
    sleeper = [sys.executable, "-c", "import sys, time; time.sleep(30)", "celery"]
    pids = {name: stack.spawn(all_parts[name], sleeper) for name, _, _ in specs[:3]}
    try:
        niced = nice_bulk_sessions(specs, all_parts, {"worker-bulk": pids["worker-bulk"]})
        if not Path("/proc/self/autogroup").exists():
            assert niced == []  # no autogroups: the process's own nice is what counts
            return
        assert sorted(niced) == sorted([pids["worker-bulk"], pids["worker-bulk-2"]])
        for name, pid in pids.items():
            nice = Path(f"/proc/{pid}/autogroup").read_text().split()[-1]
            assert nice == (str(BULK_NICE) if name.startswith("worker-bulk") else "0"), name
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
