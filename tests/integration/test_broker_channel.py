"""The broker channel keeps one redis-py client per connection pool (not one per command)."""

from __future__ import annotations

import json

from algohost.broker import Channel, transport_for
from algohost.config import Settings
from algohost.dispatch import make_celery
from tests.conftest import TEST_REDIS_URL


def test_the_redis_channel_builds_one_client_per_connection_pool(redis_client):
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    assert app.conf.broker_transport == transport_for(TEST_REDIS_URL) == "algohost.broker:Transport"
    assert transport_for("amqp://guest@localhost//") is None
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        assert channel._create_client(asynchronous=True) is not first
        first.lpush("algohost-test-list", "x")  # it works, over the channel's own pool
        assert channel._create_client().rpop("algohost-test-list") == b"x"
        channel._pool = None  # as after a reconnect: a new pool, so a new client
        assert channel._create_client() is not first


def test_messages_still_travel_through_the_shared_client(redis_client):
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for n in range(3):
            app.send_task("algohost.test", args=[n], queue="calls")
        taken = [channel.basic_get("calls", no_ack=False) for _ in range(4)]
        assert [m.decode()[0][0] for m in taken if m is not None] == [0, 1, 2]
        # Taken, not acked: each is in kombu's unacked index, restorable after a crash.
        tags = {m.delivery_tag for m in taken[:3]}
        assert set(redis_client.zrange("unacked_index", 0, -1)) == tags
        assert set(redis_client.hkeys("unacked")) == tags
        stored = json.loads(redis_client.hget("unacked", taken[0].delivery_tag))
        assert stored[0]["properties"]["delivery_tag"] == taken[0].delivery_tag
        info = taken[0].delivery_info  # and its exchange and routing key, as kombu keeps
        assert stored[1:] == [info["exchange"], info["routing_key"]]
        for message in taken[:3]:
            message.ack()
        assert redis_client.hlen("unacked") == 0 and redis_client.zcard("unacked_index") == 0


def test_an_unacked_message_is_restored_to_its_queue(redis_client):
    app = make_celery(Settings(redis_url=TEST_REDIS_URL))
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        app.send_task("algohost.test", args=["again"], queue="calls")
        message = channel.basic_get("calls", no_ack=False)
        channel.qos.restore_by_tag(message.delivery_tag)  # what a visibility timeout does
        assert redis_client.hlen("unacked") == 0
        again = channel.basic_get("calls", no_ack=True)
        assert again is not None and again.decode()[0] == ["again"]
