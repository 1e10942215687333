"""Completion webhooks: where they may go, how they are signed, how they are sent.

When a job ends, its status document is POSTed once to the job's
``callback_url``. The request carries::

    Inkq-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>

so a receiver can check both who sent it and that it is fresh (reject a ``t``
older than a few minutes to stop replays): :func:`verify` does exactly that.
Only hosts on ``INKQ_WEBHOOK_ALLOWED_HOSTS`` are ever contacted, and redirects
are not followed, so the service cannot be pointed at internal addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

import httpx

from .errors import ValidationFailed

SIGNATURE_HEADER = "Inkq-Signature"
EVENT_HEADER = "Inkq-Event"
DELIVERY_HEADER = "Inkq-Delivery"
EVENT = "job.finished"
#: Receivers should refuse signatures older than this.
TOLERANCE_S = 300


def host_allowed(host: str, allowed: list[str]) -> bool:
    """``host`` matches an entry exactly, or a ``*.example.com`` entry by suffix."""
    host = host.lower().rstrip(".")
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if not entry:
            continue
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def validate_callback_url(url: object, allowed: list[str]) -> str:
    """The URL if it is an http(s) URL to an allowed host; ValidationFailed otherwise."""
    if not isinstance(url, str) or len(url) > 2048:
        raise ValidationFailed('"callback_url" must be a URL string of at most 2048 characters.')
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed('"callback_url" must be an http:// or https:// URL.')
    if parts.username or parts.password:
        raise ValidationFailed('"callback_url" must not carry credentials.')
    if not host_allowed(parts.hostname, allowed):
        raise ValidationFailed(
            f'"callback_url" host {parts.hostname!r} is not allowed (INKQ_WEBHOOK_ALLOWED_HOSTS).')
    return url


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = TOLERANCE_S,
           now: float | None = None) -> bool:
    """True if ``header`` is a valid, fresh signature of ``body`` (for receivers)."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        t = int(fields["t"])
    except (ValueError, KeyError):
        return False
    now = time.time() if now is None else now
    if abs(now - t) > tolerance_s:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def deliver(url: str, body: bytes, *, secret: str, delivery_id: str, timeout_s: float) -> int:
    """POST ``body`` once; returns the status code, raises httpx errors on failure to connect."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "inkq-webhook/1",
        SIGNATURE_HEADER: sign(secret, body),
        EVENT_HEADER: EVENT,
        DELIVERY_HEADER: delivery_id,
    }
    with httpx.Client(timeout=timeout_s, follow_redirects=False) as client:
        return client.post(url, content=body, headers=headers).status_code
