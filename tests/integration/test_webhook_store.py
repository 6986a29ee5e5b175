"""Webhook deliveries against a real Redis: attempts, schedule, dead letters, deduplication.

The receiver is a fake poster here; tests/integration/test_webhooks.py uses a real one.
"""

import time
from dataclasses import replace

import pytest

from algohost.dispatch import RecordingDispatcher
from algohost.store.jobs import JobRecord, JobStatus
from algohost.store.webhooks import PENDING_KEY, DeliveryState, WebhookStore
from algohost.webhooks.deliverer import IN_FLIGHT_S, Deliverer
from algohost.webhooks.delivery import AttemptResult
from algohost.webhooks.notifier import WebhookHook, WebhookNotifier, job_subject

pytestmark = pytest.mark.integration
SCHEDULE = (5.0, 30.0)
JOB = JobRecord(id="j_1", owner="alice", status=JobStatus.SUCCEEDED,
                algorithm="alice/hello@0.1.0", requested="alice/hello", reason="succeeded",
                output={"ok": True}, created_at="2026-01-01T00:00:00.000Z", warm=True,
                timeout_s=10, attempts=1, webhook="https://hooks.example/x",
                webhook_events=["completed"])


class ScriptedPoster:
    """Answers with the given results in turn and remembers what it was sent."""

    timeout_s = 15.0

    def __init__(self, *results):
        self.results = list(results)
        self.sent = []

    def post(self, url, body, headers):
        self.sent.append((url, body, dict(headers)))
        return self.results.pop(0)


def answer(status, **extra):
    error = None if 200 <= status < 300 else f"HTTP {status}"
    return AttemptResult(status, 12.5, error, "ok", **extra)


@pytest.fixture
def store(redis_client):
    return WebhookStore(redis_client, 3600)


@pytest.fixture
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture
def notifier(store, dispatcher):
    return WebhookNotifier(store, dispatcher.enqueue_webhook)


def deliver(store, poster, delivery_id, attempt, generation=0):
    return Deliverer(store, poster, SCHEDULE, rand=lambda: 0.5).attempt(
        delivery_id, generation, attempt)


def test_the_completed_event_is_queued_once_per_job(notifier, dispatcher, store):
    first = notifier.job(JOB, "completed")
    assert first is not None
    assert notifier.job(replace(JOB, status=JobStatus.CANCELED), "completed") is None
    assert dispatcher.webhooks == [(first, 0, 0, 0.0)]
    assert len(store.for_subject(job_subject("j_1"))) == 1


def test_events_not_asked_for_and_jobs_without_webhook_send_nothing(notifier, dispatcher):
    hook = WebhookHook(notifier)
    hook.job_started(JOB)
    hook.job_finished(replace(JOB, id="j_2", webhook=None))
    assert dispatcher.webhooks == []


def test_the_body_is_the_public_job(notifier, store):
    delivery = store.get(notifier.job(replace(JOB, worker="w-1"), "completed"))
    assert '"status":"succeeded"' in delivery.body
    assert "worker" not in delivery.body and "owner" not in delivery.body


def test_a_2xx_delivers_and_records_one_attempt(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    poster = ScriptedPoster(answer(204))
    assert deliver(store, poster, delivery_id, 0) is None
    assert store.get(delivery_id).state == DeliveryState.DELIVERED
    [attempt] = store.attempts(delivery_id)
    assert attempt["status_code"] == 204 and attempt["latency_ms"] == 12.5
    url, body, headers = poster.sent[0]
    assert headers["webhook-id"] == delivery_id and headers["algohost-event"] == "job.completed"


def test_failures_follow_the_schedule_then_dead_letter(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    poster = ScriptedPoster(answer(500), answer(502), answer(500))
    assert deliver(store, poster, delivery_id, 0) == 5.0
    assert store.get(delivery_id).state == DeliveryState.PENDING
    assert deliver(store, poster, delivery_id, 1) == 30.0
    assert deliver(store, poster, delivery_id, 2) is None
    delivery = store.get(delivery_id)
    assert delivery.state == DeliveryState.DEAD and delivery.attempts == 3
    assert [a["status_code"] for a in store.attempts(delivery_id)] == [500, 502, 500]
    assert {h["webhook-id"] for _, _, h in poster.sent} == {delivery_id}


def test_gone_dead_letters_at_once(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    assert deliver(store, ScriptedPoster(answer(410)), delivery_id, 0) is None
    assert store.get(delivery_id).state == DeliveryState.DEAD


def test_a_refused_url_is_recorded_and_never_retried(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    refused = AttemptResult(None, 0.1, "refused: private address", refused=True)
    assert deliver(store, ScriptedPoster(refused), delivery_id, 0) is None
    assert store.get(delivery_id).state == DeliveryState.DEAD
    assert store.attempts(delivery_id)[0]["error"].startswith("refused")


def test_stale_or_duplicated_messages_do_nothing(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    poster = ScriptedPoster(answer(500))
    assert deliver(store, poster, delivery_id, 0) == 5.0
    assert deliver(store, poster, delivery_id, 0) is None  # the same message again
    assert deliver(store, poster, delivery_id, 1, generation=7) is None
    assert len(poster.sent) == 1


def test_redelivery_restarts_the_schedule_with_the_same_id(notifier, store, dispatcher):
    delivery_id = notifier.job(JOB, "completed")
    poster = ScriptedPoster(answer(410), answer(500), answer(200))
    deliver(store, poster, delivery_id, 0)
    restarted = notifier.redeliver(delivery_id)
    assert restarted.generation == 1
    assert dispatcher.webhooks[-1] == (delivery_id, 1, 1, 0.0)
    assert deliver(store, poster, delivery_id, 1, generation=1) == 5.0  # schedule from the top
    assert deliver(store, poster, delivery_id, 2, generation=1) is None
    assert store.get(delivery_id).state == DeliveryState.DELIVERED
    assert len(store.attempts(delivery_id)) == 3


def test_the_signing_key_is_made_once_and_rotates(store):
    first = store.secret("alice")
    assert first.startswith("whsec_") and store.secret("alice") == first
    assert store.secret("bob") != first
    rotated = store.rotate_secret("alice")
    assert rotated != first and store.secret("alice") == rotated


def test_an_attempt_in_flight_during_a_redelivery_leaves_the_new_round_alone(notifier, store,
                                                                           dispatcher):
    delivery_id = notifier.job(JOB, "completed")

    class RedeliveringPoster(ScriptedPoster):
        def post(self, url, body, headers):
            notifier.redeliver(delivery_id)  # the owner asks again while we wait
            return super().post(url, body, headers)

    assert deliver(store, RedeliveringPoster(answer(500)), delivery_id, 0) is None
    delivery = store.get(delivery_id)
    assert delivery.state == DeliveryState.PENDING and delivery.attempts == 0
    assert len(store.attempts(delivery_id)) == 1  # logged all the same
    assert dispatcher.webhooks[-1] == (delivery_id, 1, 0, 0.0)
    assert deliver(store, ScriptedPoster(answer(200)), delivery_id, 0, generation=1) is None
    assert store.get(delivery_id).state == DeliveryState.DELIVERED


def test_a_delivery_whose_first_message_was_lost_is_sent_again_and_delivered(notifier, store,
                                                                             dispatcher):
    delivery_id = notifier.job(JOB, "completed")  # the broker was down: this never arrived
    assert notifier.resend_overdue(now=time.time() + 30) == []  # not overdue yet
    assert notifier.resend_overdue(now=time.time() + 61) == [delivery_id]
    assert dispatcher.webhooks[-1] == (delivery_id, 0, 0, 0.0)
    assert deliver(store, ScriptedPoster(answer(200)), delivery_id, 0) is None
    assert store.get(delivery_id).state == DeliveryState.DELIVERED
    assert notifier.resend_overdue(now=time.time() + 3600) == []  # off the index


def test_a_lost_retry_is_sent_again_with_its_round_and_attempt(notifier, store, dispatcher):
    delivery_id = notifier.job(JOB, "completed")
    assert deliver(store, ScriptedPoster(answer(500)), delivery_id, 0) == 5.0
    assert notifier.resend_overdue(now=time.time() + 60) == []  # due in 5 s: 55 s late
    assert notifier.resend_overdue(now=time.time() + 66) == [delivery_id]
    assert dispatcher.webhooks[-1] == (delivery_id, 0, 1, 0.0)


def test_concurrent_sweeps_send_an_overdue_delivery_once(notifier, dispatcher):
    delivery_id = notifier.job(JOB, "completed")
    later = time.time() + 61
    assert notifier.resend_overdue(now=later) == [delivery_id]
    assert notifier.resend_overdue(now=later) == []
    assert notifier.resend_overdue(now=later + 61) == [delivery_id]  # still lost: again
    assert len(dispatcher.webhooks) == 3


def test_dead_deliveries_leave_the_pending_index_and_redelivery_returns_them(notifier, store,
                                                                             redis_client):
    delivery_id = notifier.job(JOB, "completed")
    deliver(store, ScriptedPoster(answer(410)), delivery_id, 0)
    assert redis_client.zscore(PENDING_KEY, delivery_id) is None
    notifier.redeliver(delivery_id)
    assert redis_client.zscore(PENDING_KEY, delivery_id) is not None


def test_a_copy_of_an_attempt_under_way_is_dropped(notifier, store):
    delivery_id = notifier.job(JOB, "completed")
    assert store.begin_attempt(delivery_id, 0, 0, IN_FLIGHT_S)  # the first copy, posting
    poster = ScriptedPoster(answer(200))
    assert deliver(store, poster, delivery_id, 0) is None
    assert poster.sent == [] and store.get(delivery_id).state == DeliveryState.PENDING


def test_the_in_flight_mark_is_held_until_a_slow_attempt_ends(notifier, store, redis_client):
    delivery_id = notifier.job(JOB, "completed")
    mark = store.in_flight_key(delivery_id, 0, 0)
    seen = {}

    class SlowPoster(ScriptedPoster):
        timeout_s = 100.0  # longer than the sweep's grace: the mark must outlast it

        def post(self, url, body, headers):
            seen["ttl"] = redis_client.ttl(mark)
            # The overdue sweep's copy of this very attempt arrives while it runs.
            seen["copy"] = deliver(store, ScriptedPoster(answer(200)), delivery_id, 0)
            return super().post(url, body, headers)

    poster = SlowPoster(answer(200))
    assert deliver(store, poster, delivery_id, 0) is None
    assert seen["ttl"] > SlowPoster.timeout_s and seen["copy"] is None
    assert len(poster.sent) == 1 and len(store.attempts(delivery_id)) == 1
    assert store.get(delivery_id).state == DeliveryState.DELIVERED


def test_one_owners_slow_receiver_holds_its_slots_and_never_another_owners(notifier, store,
                                                                          dispatcher):
    first = notifier.job(JOB, "completed")
    second = notifier.job(replace(JOB, id="j_2"), "completed")
    other = notifier.job(replace(JOB, id="j_3", owner="bob"), "completed")
    deferred, during = [], {}

    def slotted(poster):
        return Deliverer(store, poster, SCHEDULE, rand=lambda: 0.5, owner_slots=1,
                         defer=lambda *message: deferred.append(message))

    class SlowPoster(ScriptedPoster):
        def post(self, url, body, headers):
            # While alice's receiver holds her only slot, her next attempt waits its turn
            # and bob's goes out at once.
            during["alice"] = slotted(ScriptedPoster(answer(200))).attempt(second, 0, 0)
            bob = ScriptedPoster(answer(200))
            slotted(bob).attempt(other, 0, 0)
            during["bob sent"] = len(bob.sent)
            return super().post(url, body, headers)

    assert slotted(SlowPoster(answer(200))).attempt(first, 0, 0) is None
    assert during == {"alice": None, "bob sent": 1}
    assert deferred == [(second, 0, 0, 1.0)]
    assert store.get(second).state == DeliveryState.PENDING
    assert store.get(other).state == DeliveryState.DELIVERED
    poster = ScriptedPoster(answer(200))  # the deferred message, once alice's slot is free
    assert slotted(poster).attempt(*deferred[0][:3]) is None
    assert len(poster.sent) == 1 and store.get(second).state == DeliveryState.DELIVERED
