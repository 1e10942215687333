"""Liveness and readiness probes."""

from __future__ import annotations

import redis
from flask import Blueprint, Response

from inkq import heartbeat

from ..responses import json_response
from ..services import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers: nothing else is checked."""
    return json_response({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when Redis answers and at least one worker with a loaded model beats."""
    svc = services()
    checks: dict[str, object] = {}
    try:
        svc.store.redis.ping()
        checks["redis"] = "ok"
        workers = heartbeat.alive(svc.store.redis, svc.settings.heartbeat_s)
        checks["workers"] = workers
        checks["model_version"] = svc.store.model_version() or None
    except redis.RedisError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
        workers = 0
    ready = checks.get("redis") == "ok" and workers > 0
    return json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                         200 if ready else 503)
