"""Fair share and per-owner limits against a real Redis: slots, backlog, refill, repair."""

import json

import pytest

from algohost.config import Settings
from algohost.dispatch import (
    BULK,
    BULK_QUEUE,
    CALLS_QUEUE,
    URGENT,
    CeleryDispatcher,
    list_key,
    make_celery,
    run_queue,
)
from algohost.errors import LimitReached, RateLimited
from algohost.store.fairshare import FairShare, priority_for
from algohost.store.jobs import JobRecord, JobStatus, JobStore
from algohost.store.limits import LimitStore
from tests.conftest import TEST_REDIS_URL


class Sent:
    def __init__(self):
        self.ids = []

    def __call__(self, job_id):
        self.ids.append(job_id)


@pytest.fixture
def jobs(redis_client):
    return JobStore(redis_client, retention_s=60)


def make_fair(redis_client, **settings):
    sent = Sent()
    limits = LimitStore(redis_client, Settings(**settings))
    return FairShare(redis_client, limits, sent, JobStore.key("")), sent, limits


def submit(fair, jobs, owner, job_id):
    jobs.create(JobRecord(id=job_id, owner=owner, status=JobStatus.QUEUED,
                          created_at="2026-01-01T00:00:00.000Z"))
    admission = fair.admit(owner, job_id, jobs.owner_index_key(owner))
    if admission.sent:
        fair.enqueue(job_id)
    return admission


def finish(fair, jobs, owner, job_id):
    jobs.transition(job_id, JobStatus.RUNNING, {JobStatus.QUEUED})
    jobs.transition(job_id, JobStatus.SUCCEEDED, {JobStatus.RUNNING})
    fair.finished(owner, job_id)


def test_a_flood_waits_in_its_owners_backlog_and_another_owner_is_sent_at_once(
        redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=2)
    for n in range(50):
        submit(fair, jobs, "alice", f"j_a{n}")
    assert sent.ids == ["j_a0", "j_a1"]
    assert fair.usage("alice") == (2, 48)
    assert submit(fair, jobs, "bob", "j_b0").sent
    assert sent.ids[-1] == "j_b0"


def test_a_finished_job_hands_its_slot_to_the_next_in_order_and_only_once(redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=1)
    for n in range(3):
        submit(fair, jobs, "alice", f"j_{n}")
    finish(fair, jobs, "alice", "j_0")
    fair.finished("alice", "j_0")  # a second release of the same job does nothing
    assert sent.ids == ["j_0", "j_1"]
    assert fair.usage("alice") == (1, 1)


def test_a_job_canceled_in_the_backlog_is_skipped(redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=1)
    for n in range(3):
        submit(fair, jobs, "alice", f"j_{n}")
    jobs.transition("j_1", JobStatus.CANCELED, {JobStatus.QUEUED})
    finish(fair, jobs, "alice", "j_0")
    assert sent.ids == ["j_0", "j_2"]


def test_every_job_is_sent_exactly_once_when_all_finish(redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=3)
    for n in range(20):
        submit(fair, jobs, "alice", f"j_{n}")
    while fair.usage("alice")[0]:
        running = [j for j in sent.ids if jobs.status(j) is JobStatus.QUEUED]
        finish(fair, jobs, "alice", running[0])
    assert sorted(sent.ids) == sorted(f"j_{n}" for n in range(20))
    assert len(sent.ids) == 20


def test_repair_frees_a_slot_whose_job_ended_without_a_release(redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=1)
    submit(fair, jobs, "alice", "j_0")
    submit(fair, jobs, "alice", "j_1")
    # The worker was lost after the terminal write, before the release.
    jobs.transition("j_0", JobStatus.RUNNING, {JobStatus.QUEUED})
    jobs.transition("j_0", JobStatus.FAILED, {JobStatus.RUNNING})
    fair.repair(lambda j: (s.value if (s := jobs.status(j)) else None), stale_s=60)
    assert sent.ids == ["j_0", "j_1"]


def test_repair_sends_again_a_slot_holder_still_queued_long_after_admission(redis_client, jobs):
    fair, sent, _ = make_fair(redis_client, owner_max_running=1)
    submit(fair, jobs, "alice", "j_0")
    submit(fair, jobs, "alice", "j_1")  # puts alice on the repair's list
    fair.repair(lambda j: (s.value if (s := jobs.status(j)) else None), stale_s=-1)
    assert sent.ids == ["j_0", "j_0"]  # a second message is harmless: the claim is a CAS


def test_over_the_pending_limit_a_submit_is_refused_and_its_record_removed(redis_client, jobs):
    fair, _, _ = make_fair(redis_client, owner_max_running=1, owner_max_queued=2)
    submit(fair, jobs, "alice", "j_0")
    submit(fair, jobs, "alice", "j_1")
    with pytest.raises(LimitReached) as refused:
        submit(fair, jobs, "alice", "j_2")
    assert refused.value.details["max_queued"] == 2
    assert jobs.get("j_2") is None
    assert "j_2" not in redis_client.zrange(jobs.owner_index_key("alice"), 0, -1)


def test_over_the_submit_rate_a_submit_is_refused_with_a_retry_after(redis_client, jobs):
    fair, _, _ = make_fair(redis_client, owner_submits_per_s=0.01, owner_submit_burst=2)
    submit(fair, jobs, "alice", "j_0")
    submit(fair, jobs, "alice", "j_1")
    with pytest.raises(RateLimited) as refused:
        submit(fair, jobs, "alice", "j_2")
    assert refused.value.details["retry_after_s"] >= 1
    assert submit(fair, jobs, "bob", "j_b").sent  # the bucket is per owner


def test_an_operators_override_changes_one_owners_limits_only(redis_client, jobs):
    fair, sent, limits = make_fair(redis_client, owner_max_running=1)
    limits.set("alice", max_running=3)
    for n in range(4):
        submit(fair, jobs, "alice", f"j_a{n}")
        submit(fair, jobs, "bob", f"j_b{n}")
    assert fair.usage("alice") == (3, 1) and fair.usage("bob") == (1, 3)
    assert limits.reset("alice").max_running == 1


def taken_in_order(app, queue=CALLS_QUEUE):
    """The job ids of a queue's messages, in the order a worker takes them."""
    taken = []
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message.decode()[0][0])
    return taken


def test_another_owners_call_is_taken_before_a_floods_queued_messages(redis_client, jobs):
    """Alice floods: her slots fill the broker with her messages while every worker thread
    runs her jobs. Bob's call, sent after all of them, is the next message a freed thread
    takes, not the seventeenth — and one of alice's jobs finishing (its successor sent)
    does not put her back in front of him."""
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    dispatcher = CeleryDispatcher(app)
    limits = LimitStore(redis_client, Settings(owner_max_running=16))
    fair = FairShare(redis_client, limits, dispatcher.enqueue_run, JobStore.key(""))

    def submit_and_send(owner, job_id):
        jobs.create(JobRecord(id=job_id, owner=owner, status=JobStatus.QUEUED,
                              created_at="2026-01-01T00:00:00.000Z"))
        admission = fair.admit(owner, job_id, jobs.owner_index_key(owner))
        if admission.sent:
            dispatcher.enqueue_run(job_id, admission.priority)
        return admission

    admissions = [submit_and_send("alice", f"j_a{n}") for n in range(100)]
    assert admissions[0].priority == URGENT and admissions[15].priority == BULK
    assert fair.usage("alice") == (16, 84)
    assert submit_and_send("bob", "j_b0").priority == URGENT
    finish(fair, jobs, "alice", "j_a1")  # its slot goes to j_a16, sent behind bob's call
    taken = taken_in_order(app)
    assert taken[:2] == ["j_a0", "j_b0"]  # alice's first job was sent before bob's
    # Her jobs sent while she held 1 to 4 slots follow, in the calls queue; the rest wait
    # in the bulk queue, for the niced workers, most urgent first.
    assert taken[2:] == [f"j_a{n}" for n in range(1, 5)]
    bulk = taken_in_order(app, BULK_QUEUE)
    assert sorted(bulk) == sorted(f"j_a{n}" for n in range(5, 17)) and bulk[-1] == "j_a16"


def test_a_submit_writes_its_record_in_the_admission_and_a_refused_one_leaves_none(
        redis_client, jobs):
    """The submit's one round trip: the admission's script writes the record it accepts,
    whether sent or held in the backlog, and writes nothing for one it refuses."""
    fair, _, _ = make_fair(redis_client, owner_max_running=1, owner_max_queued=2)
    for n in range(3):
        job = JobRecord(id=f"j_{n}", owner="alice", status=JobStatus.QUEUED,
                        input={"n": n}, created_at="2026-01-01T00:00:00.000Z")
        try:
            fair.admit("alice", job.id, jobs.owner_index_key("alice"),
                       record=jobs.creation(job))
        except LimitReached:
            assert n == 2
    assert [jobs.get(f"j_{n}").input for n in range(2)] == [{"n": 0}, {"n": 1}]
    assert 0 < redis_client.ttl(JobStore.key("j_1")) <= 60
    assert jobs.get("j_2") is None
    assert redis_client.zrange(jobs.owner_index_key("alice"), 0, -1) == ["j_0", "j_1"]


def raw_messages(redis_client, key):
    return [json.loads(raw) for raw in redis_client.lrange(key, 0, -1)]


def without_ids(message):
    """A message with the fields that differ from send to send (fresh uuids) blanked."""
    message = json.loads(json.dumps(message))
    for field in ("id", "root_id"):
        message["headers"][field] = "-"
    for field in ("correlation_id", "delivery_tag"):
        message["properties"][field] = "-"
    return message


def test_a_message_the_admission_pushes_is_the_one_kombu_would_have_sent(redis_client, jobs):
    """Where the broker is the store's Redis, the admission's script pushes the job's
    message itself: onto the list (queue and priority step) that send_task would have
    used, with the same fields, at every number of slots the owner holds."""
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    dispatcher = CeleryDispatcher(app)
    assert dispatcher.messages is not None
    limits = LimitStore(redis_client, Settings(owner_max_running=20))
    fair = FairShare(redis_client, limits, dispatcher.enqueue_run, JobStore.key(""))
    for held in range(20):
        job_id = f"j_{held}"
        jobs.create(JobRecord(id=job_id, owner="alice", status=JobStatus.QUEUED,
                              created_at="2026-01-01T00:00:00.000Z"))
        admission = fair.admit("alice", job_id, jobs.owner_index_key("alice"),
                               message=dispatcher.run_message(job_id))
        assert admission.sent and admission.pushed
        assert admission.priority == priority_for(held)
        key = list_key(run_queue(admission.priority), admission.priority)
        [pushed] = raw_messages(redis_client, key)
        redis_client.delete(key)
        dispatcher.enqueue_run(job_id, admission.priority)
        [sent] = raw_messages(redis_client, key)
        redis_client.delete(key)
        assert sent["properties"]["delivery_info"]["routing_key"] == run_queue(admission.priority)
        assert without_ids(pushed) == without_ids(sent)
        assert pushed["headers"]["id"] == pushed["properties"]["correlation_id"]


def test_a_pushed_message_is_taken_and_decoded_by_the_consumer(redis_client, jobs):
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    dispatcher = CeleryDispatcher(app)
    limits = LimitStore(redis_client, Settings(owner_max_running=4))
    fair = FairShare(redis_client, limits, dispatcher.enqueue_run, JobStore.key(""))
    for n in range(3):
        jobs.create(JobRecord(id=f"j_{n}", owner="alice", status=JobStatus.QUEUED,
                              created_at="2026-01-01T00:00:00.000Z"))
        fair.admit("alice", f"j_{n}", jobs.owner_index_key("alice"),
                   message=dispatcher.run_message(f"j_{n}"))
    assert taken_in_order(app) == ["j_0", "j_1", "j_2"]


def test_a_job_held_in_the_backlog_pushes_no_message(redis_client, jobs):
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    dispatcher = CeleryDispatcher(app)
    limits = LimitStore(redis_client, Settings(owner_max_running=1))
    fair = FairShare(redis_client, limits, dispatcher.enqueue_run, JobStore.key(""))
    admissions = []
    for n in range(2):
        jobs.create(JobRecord(id=f"j_{n}", owner="alice", status=JobStatus.QUEUED,
                              created_at="2026-01-01T00:00:00.000Z"))
        admissions.append(fair.admit("alice", f"j_{n}", jobs.owner_index_key("alice"),
                                     message=dispatcher.run_message(f"j_{n}")))
    assert [a.pushed for a in admissions] == [True, False]
    assert taken_in_order(app) == ["j_0"]
    assert fair.usage("alice") == (1, 1)


def test_a_broker_apart_from_the_store_gets_its_messages_from_send_task():
    other_db = TEST_REDIS_URL.rsplit("/", 1)[0] + "/13"
    apart = make_celery(Settings(redis_url=TEST_REDIS_URL, broker_url=other_db))
    assert CeleryDispatcher(apart).run_message("j_1") is None
