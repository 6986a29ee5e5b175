"""Webhooks through the whole stack: a real worker delivers to a real receiver on 127.0.0.1.

The stack's schedule is 0.5 s, 1 s, 2 s (±20%): one attempt and three retries.
"""

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook

from algohost.api import create_app
from algohost.dispatch import RecordingDispatcher
from algohost.store.webhooks import PENDING_KEY, WebhookStore
from algohost.webhooks.notifier import WebhookNotifier
from tests.receiver import Receiver
from tests.stack import EXAMPLES, TEST_ALGORITHMS, publish
from tests.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def refs(stack):
    return {"hello": publish(stack, EXAMPLES / "hello"),
            "sleeper": publish(stack, TEST_ALGORITHMS / "sleeper")}


@pytest.fixture
def receiver():
    started = []

    def make(*statuses, running=True):
        r = Receiver(*statuses)
        started.append(r)
        return r.start() if running else r

    yield make
    for r in started:
        r.stop()


def deliveries(stack, job_id):
    response = stack.client.get(f"/v1/jobs/{job_id}/webhooks", headers=stack.auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["deliveries"]


def settled(stack, job_id, state, timeout_s=30):
    """The job's single delivery once it reaches `state`."""
    def reached():
        found = deliveries(stack, job_id)
        return found[-1] if found and found[-1]["state"] == state else None

    return eventually(reached, timeout_s,
                      lambda: f"{state}: {deliveries(stack, job_id)} {stack.worker_log()}")


def test_events_are_signed_and_verify_with_the_standardwebhooks_verifier(stack, refs, receiver):
    hook = receiver()
    job = stack.post_job(refs["hello"], {"name": "Ada"}, webhook=hook.url,
                         webhook_events=["started", "completed"])
    # Two deliveries on a queue of their own: they may arrive in either order.
    by_event = {hit.headers["algohost-event"]: hit for hit in hook.wait_for(2)}
    started, completed = by_event["job.started"], by_event["job.completed"]
    secret = stack.client.get("/v1/webhooks/secret", headers=stack.auth).get_json()["secret"]
    verifier = Webhook(secret)
    assert verifier.verify(started.body, started.headers)["status"] == "running"
    body = verifier.verify(completed.body, completed.headers)
    assert body == stack.get_job(job["id"])
    assert body["output"] == {"greeting": "Hello, Ada!"}
    assert completed.headers["algohost-event"] == "job.completed"
    assert started.headers["webhook-id"] != completed.headers["webhook-id"]


def test_two_500s_then_200_is_one_success_after_three_attempts(stack, refs, receiver):
    hook = receiver(500, 500)
    job = stack.post_job(refs["hello"], "retry", webhook=hook.url)
    delivery = settled(stack, job["id"], "delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert all(a["latency_ms"] >= 0 and a["at"] for a in delivery["attempts"])
    stack.drain()  # no attempt is left queued or scheduled: nothing more arrives
    assert len(hook.received) == 3
    assert {r.headers["webhook-id"] for r in hook.received} == {delivery["id"]}


def test_a_receiver_down_until_after_the_second_retry_still_receives(stack, refs, receiver):
    hook = receiver(running=False)
    job = stack.post_job(refs["hello"], "late", webhook=hook.url)
    eventually(lambda: len((deliveries(stack, job["id"]) or [{"attempts": []}])[0]["attempts"])
               >= 3, what=lambda: f"three failed attempts: {stack.worker_log()}")
    hook.start()
    delivery = settled(stack, job["id"], "delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [None, None, None, 200]
    assert "connection" in delivery["attempts"][0]["error"]
    assert len(hook.received) == 1


def test_gone_stops_the_retries(stack, refs, receiver):
    hook = receiver(410)
    job = stack.post_job(refs["hello"], "gone", webhook=hook.url)
    delivery = settled(stack, job["id"], "dead")
    assert [a["status_code"] for a in delivery["attempts"]] == [410]
    stack.drain()  # no retry is left queued or scheduled
    assert len(hook.received) == 1 and len(deliveries(stack, job["id"])[0]["attempts"]) == 1


def test_a_dead_delivery_is_redelivered_with_the_same_id(stack, refs, receiver):
    hook = receiver(500, 500, 500, 500)
    job = stack.post_job(refs["hello"], "dead", webhook=hook.url)
    dead = settled(stack, job["id"], "dead")
    assert len(dead["attempts"]) == 4
    response = stack.client.post(f"/v1/jobs/{job['id']}/webhooks/redeliver", headers=stack.auth)
    assert response.status_code == 202, response.get_json()
    delivered = settled(stack, job["id"], "delivered")
    assert delivered["id"] == dead["id"] and len(delivered["attempts"]) == 5
    assert hook.received[-1].headers["webhook-id"] == dead["id"]


def test_cancel_sends_one_completed_event_with_status_canceled(stack, refs, receiver):
    hook = receiver()
    job = stack.post_job(refs["sleeper"], 30, webhook=hook.url)
    stack.wait_for_job(job["id"], lambda j: j["status"] == "running", 60, "to start")
    canceled = stack.client.post(f"/v1/jobs/{job['id']}/cancel", headers=stack.auth)
    assert canceled.status_code == 200
    [event] = hook.wait_for(1)
    assert json.loads(event.body)["status"] == "canceled"
    stack.wait_for_job(job["id"], lambda j: j["finished_at"] and j["metrics"], 60,
                       "to be seen canceled by the worker")
    stack.drain()  # the worker's call has ended and sent whatever it sends
    assert len(hook.received) == 1 and len(deliveries(stack, job["id"])) == 1


def test_a_private_receiver_is_refused_without_the_opt_in(stack, refs):
    strict = create_app(stack.settings.with_overrides(webhook_allow_private=False),
                        dispatcher=RecordingDispatcher()).test_client()
    response = strict.post("/v1/jobs", headers=stack.auth, json={
        "algorithm": refs["hello"], "input": 1, "webhook": "http://127.0.0.1:9/hook"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "webhook_refused"


def test_a_delivery_whose_message_was_lost_is_sent_by_the_workers_sweep(stack, receiver):
    hook = receiver()
    lost = RecordingDispatcher()  # the broker was down when the first attempt was sent
    notifier = WebhookNotifier(WebhookStore(stack.redis, stack.settings.job_retention_s),
                               lost.enqueue_webhook)
    job = {"id": "j_lost", "owner": stack.owner, "webhook": hook.url,
           "webhook_events": ["completed"], "status": "succeeded"}
    delivery_id = notifier.notify("job:j_lost", stack.owner, hook.url, ["completed"],
                                  "completed", lambda: json.dumps(job))
    stack.redis.zadd(PENDING_KEY, {delivery_id: time.time() - 120})  # due two minutes ago
    [request] = hook.wait_for(1, timeout_s=stack.settings.lease_s + 30)
    assert request.headers["webhook-id"] == delivery_id
    assert json.loads(request.body)["id"] == "j_lost"
    eventually(lambda: notifier.store.get(delivery_id).state == "delivered", 10,
               lambda: str(notifier.store.get(delivery_id)))
    assert stack.redis.zscore(PENDING_KEY, delivery_id) is None
