"""kombu's Redis transport, made to survive what stopped a worker in kombu's own.

A message it cannot read is dropped instead of stopping the consumer, and a
channel whose connection is gone fails as a connection error, which Celery
recovers from, instead of an ``AttributeError``, which stopped the worker.

kombu's Redis channel pops a message (``BRPOP``) and decodes its JSON envelope
before Celery sees it. A message that is not kombu's JSON (written into Redis
by other means) raised out of the consumer loop and stopped the worker
(celery/celery#4308 and celery/kombu#2421 describe the same for other
transports). By then the message is off the queue, and nothing could run it:
logging it and carrying on loses nothing.

When Redis goes away, Celery collects the broken connection and closes it.
If the channel was waiting on BRPOP at that moment, its first close fails on
that read and leaves it open; collecting then detaches the transport from its
connection (``transport.client = None``), and the second close goes on to put
the channel's unacknowledged messages back. kombu then builds a connection
pool from the detached transport and fails on ``None.hostname``. Celery only
treats connection errors as recoverable, so the worker shut down
("Unrecoverable error") in the middle of a Redis restart. Here that pool
fails as a lost connection: the messages stay in Redis's unacknowledged set
and come back after the visibility timeout, as any lost connection's do.

Only ``redis://`` URLs use this transport (:func:`transport_for`): kombu checks
``rediss://`` for TLS options itself, and other schemes keep their own.
"""

from __future__ import annotations

import binascii
import json
import logging
from base64 import b64decode
from queue import Empty
from typing import Any
from urllib.parse import urlparse

import redis as redis_py
from kombu.transport import redis

log = logging.getLogger(__name__)

#: What :func:`transport_for` gives Celery's ``broker_transport``.
TRANSPORT = f"{__name__}:Transport"


class UnreadableMessage(ValueError):
    """A queue held something that is not a kombu message envelope."""


def check_envelope(payload: Any) -> None:
    """Raise :class:`UnreadableMessage` unless ``payload`` (decoded JSON) has what
    kombu's message class reads: ``properties`` with a ``delivery_tag``, and a
    text body that decodes as its ``body_encoding`` says."""
    if not isinstance(payload, dict) or not isinstance(payload.get("properties"), dict):
        raise UnreadableMessage("not a kombu message envelope")
    properties = payload["properties"]
    if "delivery_tag" not in properties:
        raise UnreadableMessage("no delivery tag")
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise UnreadableMessage("body is not text")
    if body and properties.get("body_encoding") == "base64":
        try:
            b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise UnreadableMessage(f"body is not base64: {exc}") from None


class Channel(redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except (json.JSONDecodeError, UnicodeDecodeError, UnreadableMessage) as exc:
            # Already popped: the queue has moved on. Say so, and read the next one.
            log.error("dropped a message that is not a kombu message (%s: %s)", type(exc).__name__, exc)
            raise Empty() from None

    def _connparams(self, asynchronous: bool = False) -> dict:
        if getattr(self.connection, "client", None) is None:  # detached: see the module docstring
            raise redis_py.ConnectionError("the broker connection was closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(redis.Transport):
    Channel = Channel

    def _deliver(self, message: Any, queue: str) -> None:
        check_envelope(message)
        super()._deliver(message, queue)


def transport_for(broker_url: str) -> str | None:
    """The ``broker_transport`` for ``broker_url``: this module's for ``redis://``,
    else ``None`` (kombu's choice from the URL)."""
    return TRANSPORT if urlparse(broker_url).scheme == "redis" else None
