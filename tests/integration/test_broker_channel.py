"""The broker channel keeps one redis-py client per connection pool (not one per command)."""

from __future__ import annotations

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
        for message in taken[:3]:
            message.ack()  # the acks' bookkeeping goes through the shared client too
        assert redis_client.hlen("unacked") == 0
