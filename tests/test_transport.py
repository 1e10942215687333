"""The broker transport's check of a message envelope (the live test is in test_reliability)."""

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
