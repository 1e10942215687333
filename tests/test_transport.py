"""The broker transport: its check of a message envelope, and a channel of a lost connection
(the live tests, a queue holding junk and Redis restarted mid-job, are in test_reliability)."""

from __future__ import annotations

import pytest

from inkq.transport import TRANSPORT, UnreadableMessage, check_envelope, transport_for

GOOD = {"body": "e30=", "content-type": "application/json", "content-encoding": "utf-8",
        "properties": {"delivery_tag": "5f2c", "body_encoding": "base64", "delivery_info": {}}}


def test_a_kombu_envelope_passes():
    check_envelope(GOOD)
    check_envelope({"properties": {"delivery_tag": 1}})  # no body at all


@pytest.mark.parametrize("payload", [
    42, "text", [GOOD], {}, {"body": "e30="}, {"properties": "x"}, {"properties": {}},
    {**GOOD, "body": 7}, {**GOOD, "body": "not base64!"}, {**GOOD, "body": "e30"},
])
def test_anything_else_is_unreadable(payload):
    with pytest.raises(UnreadableMessage):
        check_envelope(payload)


def test_only_plain_redis_urls_get_the_transport():
    assert transport_for("redis://localhost:6379/0") == TRANSPORT
    # rediss: kombu itself insists on TLS options; other schemes keep their transport
    assert transport_for("rediss://localhost:6380/0") is None
    assert transport_for("redis+socket:///tmp/redis.sock") is None
    assert transport_for("sentinel://localhost:26379") is None


def test_a_channel_of_a_lost_connection_fails_as_a_connection_error(tmp_path):
    """Celery's cleanup after Redis went away, as a worker logged it.

    The channel was waiting on BRPOP: closing it reads that reply, fails, and
    leaves the channel open. ``Connection.collect()`` then detaches the
    transport, and closing the connection closes the channel again. Now it
    goes on to put its unacknowledged message back and asks the detached
    transport where Redis is. That must fail as a connection error, which
    Celery expects and reconnects after; it was an AttributeError, which
    stopped the worker ("Unrecoverable error").
    """
    from kombu import Connection, Queue

    from inkq.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        conn = Connection(server.url, transport=TRANSPORT)
        lost = conn.connection_errors
        queue = Queue("inkq.test-lost")
        held = []
        with conn.Producer() as producer:
            producer.publish({"n": 1}, routing_key=queue.name, declare=[queue])
        consumer = conn.Consumer(queue, callbacks=[lambda body, message: held.append(message)])
        consumer.consume()
        conn.drain_events(timeout=5)  # delivered, not yet acknowledged
        assert len(held) == 1
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.2)  # a BRPOP left waiting, as in the worker's event loop
        channel = conn.default_channel
        assert channel._in_poll
    finally:
        server.stop()
    with pytest.raises(lost):
        channel.close()  # reading the pending BRPOP fails: the channel stays open
    assert not channel.closed
    channel.connection.client = None  # what collect() does next (Connection._do_close_transport)
    with pytest.raises(lost):
        channel.close()
    with pytest.raises(lost):
        held[0].ack()
