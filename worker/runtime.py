"""What a worker process loads once and keeps: settings, the model, the job store.

Loaded lazily and cached per process; the worker's main process loads the
model before forking its pool, so every child starts with it in memory.
"""

from __future__ import annotations

import functools

from inkq.jobstore import JobStore, connect
from inkq.settings import Settings

from .model import Model, load_model


@functools.cache
def settings() -> Settings:
    return Settings.from_env()


@functools.cache
def model() -> Model:
    s = settings()
    return load_model(s.model_path, s.card_path)


@functools.cache
def store() -> JobStore:
    s = settings()
    return JobStore(connect(s.broker_url, timeout_s=10), ttl_s=s.result_ttl_s)
