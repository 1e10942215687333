"""Workers announce themselves in Redis so /readyz can tell a live worker with a model.

One daemon thread in each worker's main process refreshes its entry every
``INKQ_HEARTBEAT_S``; an entry older than three beats counts as gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

import redis

from inkq import keys
from inkq.errors import StoreUnavailable

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(client: redis.Redis, wid: str, model_version: str, interval_s: float) -> None:
    now = time.time()
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.workers(), {wid: now})
    pipe.zremrangebyscore(keys.workers(), "-inf", now - 10 * interval_s)
    pipe.hset(keys.worker(wid), mapping={"model_version": model_version, "pid": os.getpid()})
    pipe.expire(keys.worker(wid), max(1, int(3 * interval_s) + 1))
    pipe.set(keys.model_version(), model_version)
    pipe.execute()


def start(client: redis.Redis, model_version: str, interval_s: float,
          also: Callable[[], object] | None = None) -> threading.Event:
    """Beat in a daemon thread until the returned event is set; call ``also``
    after every beat (its errors are logged, never fatal)."""
    stop = threading.Event()
    wid = worker_id()

    def loop() -> None:
        while not stop.is_set():
            try:
                beat(client, wid, model_version, interval_s)
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            if also is not None:
                try:
                    also()
                except (redis.RedisError, StoreUnavailable) as exc:
                    log.warning("periodic check failed: %s", exc)
                except Exception:  # noqa: BLE001 - the heartbeat must go on
                    log.exception("periodic check failed")
            stop.wait(interval_s)
        try:
            client.zrem(keys.workers(), wid)
            client.delete(keys.worker(wid))
        except redis.RedisError:
            pass

    threading.Thread(target=loop, name="inkq-heartbeat", daemon=True).start()
    return stop


def alive(client: redis.Redis, interval_s: float) -> int:
    """How many workers beat within the last three intervals."""
    return int(client.zcount(keys.workers(), time.time() - 3 * interval_s, "+inf"))
