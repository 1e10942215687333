"""The worker's Celery app: the shared app plus the task bodies and process set-up.

``celery -A worker.celery_app worker`` and ``inkq worker`` both run this. The
model is loaded (and its artifact verified) in the main process before the pool
forks, so a bad artifact stops the worker at start-up, not at the first task,
and every pool child starts with the model already in memory.
"""

from __future__ import annotations

import logging
import os
import time

# One BLAS thread per process: concurrency comes from the pool, and threads
# fighting over 2 cores only slow the batched matrix products down.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from celery import signals  # noqa: E402

from inkq import metrics  # noqa: E402,F401  (picks the metrics folder before the pool forks)

from inkq.jobstore import check_redis_config, connect  # noqa: E402
from inkq.queue import make_celery  # noqa: E402
from inkq.settings import Settings  # noqa: E402

log = logging.getLogger(__name__)

app = make_celery(Settings.from_env(), include=["worker.tasks", "worker.notify"])

#: The notifier (webhooks only) sets this False: it needs no model and must not
#: count as a classifying worker in /readyz.
CLASSIFIES = True

_heartbeat_stop = None


@signals.worker_init.connect
def _load_model(**_: object) -> None:
    from . import runtime

    if not CLASSIFIES:
        return
    model = runtime.model()
    log.info("model %s loaded (%d classes)", model.version, len(model.labels))
    check_redis_config(runtime.store().redis, log)


@signals.worker_ready.connect
def _start_heartbeat(**_: object) -> None:
    global _heartbeat_stop
    from inkq import heartbeat

    if not CLASSIFIES:
        return
    from . import runtime

    from inkq.queue import send_chunk

    from .tasks import requeue_lost

    s = runtime.settings()

    def publish(job_id: str, start: int, stop: int) -> None:
        send_chunk(app, job_id, start, stop, time.time())

    _heartbeat_stop = heartbeat.start(
        connect(s.broker_url, timeout_s=5), runtime.model().version, s.heartbeat_s,
        also=lambda: requeue_lost(runtime.store(), s, publish))


@signals.worker_shutdown.connect
def _stop_heartbeat(**_: object) -> None:
    if _heartbeat_stop is not None:
        _heartbeat_stop.set()
