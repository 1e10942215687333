"""``GET /metrics``: Prometheus exposition of every API and worker process on this host,
plus what only Redis knows (queue depths, workers alive, the model version)."""

from __future__ import annotations

from flask import Blueprint, Response
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily

from inkq import heartbeat, metrics
from inkq.queue import BULK_QUEUE, PREDICT_QUEUE, WEBHOOK_QUEUE

from ..services import services

bp = Blueprint("metrics", __name__)


class RedisCollector:
    """Read at scrape time from Redis, so every API process reports the same values."""

    def __init__(self, store, heartbeat_s: float):
        self.store = store
        self.heartbeat_s = heartbeat_s

    def collect(self):
        r = self.store.redis
        depth = GaugeMetricFamily("inkq_queue_depth", "Tasks waiting in each queue.", labels=["queue"])
        pipe = r.pipeline(transaction=False)
        for q in (PREDICT_QUEUE, BULK_QUEUE, WEBHOOK_QUEUE):
            pipe.llen(q)
        for q, n in zip((PREDICT_QUEUE, BULK_QUEUE, WEBHOOK_QUEUE), pipe.execute()):
            depth.add_metric([q], n)
        yield depth
        yield GaugeMetricFamily("inkq_workers_alive", "Workers with a model that beat recently.",
                                value=heartbeat.alive(r, self.heartbeat_s))
        info = InfoMetricFamily("inkq_model", "The model version workers announced.")
        info.add_metric([], {"version": self.store.model_version() or "none"})
        yield info


@bp.get("/metrics")
def scrape() -> Response:
    svc = services()
    with svc.store.guard():
        body, content_type = metrics.exposition([RedisCollector(svc.store, svc.settings.heartbeat_s)])
    return Response(body, content_type=content_type)
