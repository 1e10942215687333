"""What a request handler needs, built once per app: settings, store, queue."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from celery import Celery
from flask import current_app

from inkq.jobstore import JobStore, connect
from inkq.queue import make_celery
from inkq.settings import Settings


@dataclass
class Services:
    settings: Settings
    store: JobStore
    #: For calls that block on purpose (waiting for a /predict reply).
    blocking: redis.Redis
    celery: Celery

    @classmethod
    def create(cls, settings: Settings) -> "Services":
        client = connect(settings.broker_url, timeout_s=settings.redis_timeout_s)
        blocking = connect(settings.broker_url, timeout_s=settings.predict_timeout_s + 2)
        return cls(
            settings=settings,
            store=JobStore(client, ttl_s=settings.result_ttl_s),
            blocking=blocking,
            celery=make_celery(settings, publish_timeout_s=settings.redis_timeout_s),
        )


def services() -> Services:
    return current_app.extensions["inkq"]
