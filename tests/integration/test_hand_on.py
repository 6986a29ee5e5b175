"""A flood's backlog is handed on inside the worker: the thread whose job freed a slot runs
the owner's next job itself, and nothing is lost or run twice."""

from __future__ import annotations

from algohost.store.fairshare import UrgentLane
from algohost.worker.tasks import HandOn
from tests.integration.test_fair_share import finish, make_fair, submit
from tests.stack import EXAMPLES, publish
from tests.waiting import eventually


def test_a_release_offers_its_first_admitted_job_to_keep_and_sends_the_rest(redis_client):
    from algohost.store.jobs import JobStore

    jobs = JobStore(redis_client, retention_s=60)
    fair, sent, _ = make_fair(redis_client, owner_max_running=2)
    for n in range(5):
        submit(fair, jobs, "alice", f"j_{n}")
    assert sent.ids == ["j_0", "j_1"]
    kept: list[str] = []
    fair.keep = lambda owner, job_id: not kept and not kept.append(job_id)
    finish(fair, jobs, "alice", "j_0")
    assert kept == ["j_2"] and sent.ids == ["j_0", "j_1"]  # kept, so not sent
    fair.keep = lambda owner, job_id: False
    finish(fair, jobs, "alice", "j_1")
    assert sent.ids == ["j_0", "j_1", "j_3"]
    assert fair.usage("alice") == (2, 1)  # j_2 and j_3 hold the slots either way


def test_only_an_open_thread_keeps_one_job_and_closing_returns_what_was_not_run():
    hand_on = HandOn()
    assert not hand_on.keep("a", "j_outside")  # a release outside run_job: sent as before
    hand_on.open()
    assert hand_on.keep("a", "j_1") and not hand_on.keep("a", "j_2")  # one at a time
    assert hand_on.take() == "j_1" and hand_on.take() is None
    assert hand_on.keep("a", "j_3")
    assert hand_on.close() == ["j_3"]  # never run here: the caller sends it
    assert not hand_on.keep("a", "j_4") and hand_on.close() == []


def test_a_flood_runs_to_the_end_with_fewer_messages_than_jobs(stack):
    ref = publish(stack, EXAMPLES / "hello")
    before = stack.log_path.read_text(errors="replace").count("algohost.run_job[")
    ids = []
    for n in range(80):  # past the owner's 16 slots: 64 wait in its backlog
        response = stack.client.post("/v1/jobs", json={"algorithm": ref,
                                                      "input": {"name": str(n)}},
                                     headers=stack.auth)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])

    def all_done():
        states = [stack.get_job(job_id) for job_id in ids]
        return states if all(s["status"] not in ("queued", "running") for s in states) else None

    states = eventually(all_done, 180, "the flood to finish")
    assert [s["output"] for s in states] == [{"greeting": f"Hello, {n}!"} for n in range(80)]
    assert all(s["attempts"] == 1 for s in states)  # each ran once
    stack.drain()
    log = stack.log_path.read_text(errors="replace")
    received = log.count("algohost.run_job[") - before
    # Each message is logged when received and when done; handed-on jobs have neither.
    assert received < 2 * 80, received


def test_no_job_is_kept_while_another_owners_first_call_is_served():
    serving = {"bob"}
    hand_on = HandOn(yield_to=lambda owner: bool(serving - {owner}))
    hand_on.open()
    assert not hand_on.keep("alice", "j_1")  # bob's call runs: sent through the broker
    assert hand_on.keep("bob", "j_2")  # an owner's own first calls never slow its flood
    serving.clear()
    hand_on.close()
    hand_on.open()
    assert hand_on.keep("alice", "j_3") and hand_on.close() == ["j_3"]


def test_the_urgent_lane_marks_an_owner_for_a_while_and_is_looked_at_sparingly(redis_client):
    now = [1000.0]
    calls, bulk = (UrgentLane(redis_client, hold_s=0.2, look_every_s=0.02,
                              clock=lambda: now[0]) for _ in range(2))
    assert not bulk.busy_for("alice")
    calls.mark("bob")
    assert not bulk.busy_for("alice")  # looked a moment ago: the last answer stands
    now[0] += 0.05
    assert bulk.busy_for("alice") and not bulk.busy_for("bob")
    now[0] += 0.2  # bob's mark has lapsed
    assert not bulk.busy_for("alice")
