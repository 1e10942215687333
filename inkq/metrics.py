"""Prometheus metrics, in multiprocess mode: every gunicorn thread and process and
every Celery pool process on a host writes to one folder, and ``GET /metrics``
sums them.

Import this module before anything else imports ``prometheus_client``: the
multiprocess folder must be chosen before the first metric exists. In Docker
Compose the API and worker containers share that folder as a volume.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .settings import Settings

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Settings.from_env().metrics_dir.resolve())
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)

from prometheus_client import values  # noqa: E402

# Files are named per process: host and pid, since containers sharing one
# metrics volume (docker compose --scale) each number their processes from 1.
values.ValueClass = values.MultiProcessValue(
    process_identifier=lambda: f"{socket.gethostname()}-{os.getpid()}")

from prometheus_client import Counter, Histogram  # noqa: E402

#: Latency buckets (s) from a fraction of a millisecond to a minute.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

JOBS_SUBMITTED = Counter("inkq_jobs_submitted", "Bulk jobs accepted.")
JOBS_FINISHED = Counter("inkq_jobs_finished", "Bulk jobs that ended, by final status.", ["status"])
IMAGES = Counter(
    "inkq_images", "Images of bulk jobs finished, by outcome (classified or item error); "
    "counted once even when a chunk is delivered twice.", ["outcome"])
PREDICTIONS = Counter("inkq_predictions", "Single /predict images answered, by outcome.", ["outcome"])
STAGE_SECONDS = Histogram(
    "inkq_stage_seconds", "Time per chunk in each stage: queue_wait (published to claimed), "
    "decode_preprocess, inference, result_write.", ["stage"], buckets=_BUCKETS)
CHUNK_IMAGES = Histogram(
    "inkq_chunk_images", "Images per chunk.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
HTTP_REQUESTS = Counter("inkq_http_requests", "API requests, by route and status.", ["route", "method", "status"])
HTTP_SECONDS = Histogram("inkq_http_request_seconds", "API request latency, by route.", ["route"],
                         buckets=_BUCKETS)


def exposition(extra_collectors=()) -> tuple[bytes, str]:
    """The summed metrics of every process on this host, in Prometheus text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for collector in extra_collectors:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
