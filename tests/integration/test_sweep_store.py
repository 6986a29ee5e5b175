"""The sweep record against a real Redis: trial numbers taken once, trials settled once,
an ended sweep starting nothing, the controller's lock and its requests."""

from dataclasses import replace

import pytest

from algohost.store.sweeps import SweepRecord, SweepStatus, SweepStore, Trial, TrialStatus
from algohost.sweepspace import Objective, Param, Strategy, SweepSpec

SPEC = SweepSpec(space={"x": Param("int", 0, 9)}, strategy=Strategy.RANDOM,
                 objective=Objective("score"), trials=5, seed=1)


@pytest.fixture
def sweeps(redis_client):
    store = SweepStore(redis_client, retention_s=60)
    store.create(SweepRecord(id="s_1", owner="alice", status=SweepStatus.RUNNING, spec=SPEC),
                 0.0)
    return store


def test_the_record_reads_back_with_its_typed_spec(sweeps):
    record = sweeps.get("s_1")
    assert record.spec == SPEC and record.status is SweepStatus.RUNNING
    assert sweeps.running() == ["s_1"] and sweeps.list_for_owner("alice", 5) == [record]


def test_a_trial_number_is_taken_once(sweeps):
    assert sweeps.add_trial("s_1", Trial(0, "j_a", {"x": 1}))
    assert not sweeps.add_trial("s_1", Trial(0, "j_b", {"x": 2}))
    assert [(t.number, t.job_id) for t in sweeps.trials("s_1")] == [(0, "j_a")]


def test_a_trial_settles_once(sweeps):
    trial = Trial(0, "j_a", {"x": 1})
    sweeps.add_trial("s_1", trial)
    assert sweeps.settle_trial("s_1", replace(trial, status=TrialStatus.SUCCEEDED,
                                              objective=3.0))
    assert not sweeps.settle_trial("s_1", replace(trial, status=TrialStatus.FAILED))
    assert sweeps.trials("s_1")[0].objective == 3.0


def test_an_ended_sweep_takes_no_trial_and_ends_once(sweeps):
    assert sweeps.finish("s_1", SweepStatus.CANCELED, reason="canceled")
    assert not sweeps.finish("s_1", SweepStatus.COMPLETED, reason="budget_spent")
    assert not sweeps.add_trial("s_1", Trial(0, "j_a", {"x": 1}))
    assert sweeps.get("s_1").reason == "canceled" and sweeps.running() == []


def test_a_step_asked_for_while_the_lock_is_held_is_left_for_the_holder(sweeps):
    assert sweeps.lock("s_1", "a", 60)
    assert not sweeps.lock("s_1", "b", 60)
    sweeps.request_step("s_1")
    assert sweeps.take_request("s_1") and not sweeps.take_request("s_1")
    sweeps.unlock("s_1", "b")  # not its holder: nothing happens
    assert not sweeps.lock("s_1", "b", 60)
    sweeps.unlock("s_1", "a")
    assert sweeps.lock("s_1", "b", 60)


def test_a_trial_in_flight_when_its_sweep_ended_is_still_recorded_when_its_job_ends(
        sweeps, redis_client):
    """A spent budget or a deleted version fails the sweep while trials run: their ends
    are recorded, and nothing new starts."""
    from algohost.store.jobs import JobRecord, JobStatus, JobStore
    from algohost.worker.sweeping import SweepController

    jobs = JobStore(redis_client, retention_s=60)
    jobs.create(JobRecord(id="j_a", owner="alice", status=JobStatus.SUCCEEDED,
                          output={"score": 4.5}, metrics={"total_ms": 12.0}))
    sweeps.add_trial("s_1", Trial(0, "j_a", {"x": 1}))
    sweeps.add_trial("s_1", Trial(1, "j_never_written", {"x": 2}))
    sweeps.finish("s_1", SweepStatus.FAILED, reason="budget_exhausted")
    SweepController(sweeps, jobs, registry=None, submitter=None).step("s_1")
    first, second = sweeps.trials("s_1")
    assert (first.status, first.objective, first.duration_ms) == \
        (TrialStatus.SUCCEEDED, 4.5, 12.0)
    assert (second.status, second.reason) == (TrialStatus.FAILED, "not_started")
    assert jobs.get("j_never_written") is None  # nothing was submitted for it


def test_a_step_that_breaks_fails_the_sweep_saying_why_instead_of_stalling(
        sweeps, redis_client):
    from algohost.store.jobs import JobStore
    from algohost.worker.sweeping import SweepController

    class BrokenRegistry:
        def build_for_call(self, build_id):
            raise KeyError(build_id)

    controller = SweepController(sweeps, JobStore(redis_client, retention_s=60),
                                 registry=BrokenRegistry(), submitter=None)
    controller.step("s_1")
    record = sweeps.get("s_1")
    assert (record.status, record.reason) == (SweepStatus.FAILED, "controller_error")
    assert record.message.startswith("KeyError")
