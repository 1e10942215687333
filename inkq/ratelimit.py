"""Per-key request rate limiting in Redis, shared by every API process.

A fixed one-minute window per key: one INCR and one EXPIRE in a pipeline per
request. Celery's own rate limits are per worker, so limiting belongs here.
"""

from __future__ import annotations

import time

import redis

from . import keys

WINDOW_S = 60


def hit(client: redis.Redis, who: str, limit_per_min: int, now: float | None = None) -> int:
    """Count a request; returns 0 if allowed, else the seconds until the window resets."""
    if limit_per_min <= 0:
        return 0
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    name = keys.rate(who, window)
    pipe = client.pipeline(transaction=False)
    pipe.incr(name)
    pipe.expire(name, WINDOW_S + 1)
    count, _ = pipe.execute()
    if count <= limit_per_min:
        return 0
    return max(1, int((window + 1) * WINDOW_S - now + 0.999))
