"""The consumer watchdog against a real Redis broker and a real Celery worker (threads
pool, event loop): it sees a stalled consumer, leaves a busy or idle one alone, and its
reconnect makes the consumer fetch again."""

import uuid

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from algohost.worker.watchdog import ConsumerWatchdog, force_reconnect, queue_lengths
from tests.conftest import TEST_REDIS_URL
from tests.waiting import eventually

pytestmark = pytest.mark.integration


class Consumer:
    """What the watchdog is told: messages waiting, threads free, reconnects asked."""

    def __init__(self, waiting=0, free=4):
        self.waiting_now, self.free, self.reconnects = waiting, free, 0

    def watchdog(self):
        return ConsumerWatchdog(lambda: self.waiting_now, lambda: self.free, self.reconnect)

    def reconnect(self):
        self.reconnects += 1


def test_messages_waiting_and_nothing_received_with_threads_free_is_a_stall():
    consumer = Consumer(waiting=5)
    watchdog = consumer.watchdog()
    assert not watchdog.check()  # once may be a moment between two fetches
    assert watchdog.check() and consumer.reconnects == 1
    assert not watchdog.check()  # and it gives the reconnect its time


def test_a_consumer_that_receives_is_not_stalled():
    consumer = Consumer(waiting=5)
    watchdog = consumer.watchdog()
    for _ in range(4):
        watchdog.on_received()
        assert not watchdog.check()
    assert consumer.reconnects == 0


def test_a_worker_with_every_thread_busy_or_an_empty_queue_is_not_stalled():
    busy, idle = Consumer(waiting=5, free=0), Consumer(waiting=0)
    for consumer in (busy, idle):
        watchdog = consumer.watchdog()
        for _ in range(4):
            assert not watchdog.check()
        assert consumer.reconnects == 0


def test_the_backlog_is_read_from_the_brokers_queue_lists(redis_client):
    queues = [f"wd-{uuid.uuid4().hex[:8]}", f"wd-{uuid.uuid4().hex[:8]}"]
    redis_client.rpush(queues[0], "m1", "m2")
    redis_client.rpush(queues[1], "m3")
    waiting = queue_lengths(TEST_REDIS_URL, queues)
    assert waiting is not None and waiting() == 3
    assert queue_lengths("amqp://guest@localhost//", queues) is None


def test_a_forced_reconnect_makes_a_real_consumer_fetch_again(redis_client):
    queue = f"wd-{uuid.uuid4().hex[:8]}"
    app = Celery("watchdog-test", broker=TEST_REDIS_URL)
    app.conf.update(task_default_queue=queue, worker_hijack_root_logger=False,
                    broker_connection_retry_on_startup=True, worker_prefetch_multiplier=1)
    done = []

    @app.task(name="watchdog_test.note")
    def note(value):
        done.append(value)

    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        consumer = worker.consumer
        note.delay("before")
        eventually(lambda: "before" in done, what="the first message to be consumed")
        connection = consumer.connection
        force_reconnect(consumer)
        eventually(lambda: consumer.connection is not None
                   and consumer.connection is not connection,
                   what="the consumer to open a new connection")
        note.delay("after")
        eventually(lambda: "after" in done, what="a message after the reconnect")
