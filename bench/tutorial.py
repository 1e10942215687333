"""The comparison design: the common Flask+Celery tutorial, minimally.

One Celery task per image, the image itself (base64 text) in the task message,
the result through Celery's Redis result backend, and the client collecting
every ``AsyncResult.get()``. Celery's defaults otherwise (prefetch 4, early
acks), as the tutorials leave them. The same model and the same per-image code
as inkq (:func:`worker.pipeline.classify_encoded`, the model loaded once per
worker before the pool forks), so the difference is the design alone.

Run its worker with::

    BENCH_TUTORIAL_REDIS=redis://127.0.0.1:6379 python -m celery -A bench.tutorial worker -c 2

It uses databases 2 (broker) and 3 (results) of that Redis, apart from inkq's.
"""

from __future__ import annotations

import os
import time
from typing import Any

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from celery import Celery, signals  # noqa: E402

QUEUE = "bench.tutorial"
TASK = "bench.tutorial.classify_one"
READY_KEY = "bench:tutorial:ready"


def make_app(redis_base: str | None = None) -> Celery:
    base = (redis_base or os.environ.get("BENCH_TUTORIAL_REDIS", "redis://127.0.0.1:6379")).rstrip("/")
    if base.rsplit("/", 1)[-1].isdigit():  # a URL with a database: use the server only
        base = base.rsplit("/", 1)[0]
    app = Celery("bench_tutorial", broker=f"{base}/2", backend=f"{base}/3")
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_default_queue=QUEUE, worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()


@app.task(name=TASK)
def classify_one(image: str) -> dict[str, Any]:
    from worker import runtime
    from worker.pipeline import classify_encoded

    s = runtime.settings()
    return classify_encoded(runtime.model(), [image], max_image_bytes=s.max_image_bytes,
                            max_image_pixels=s.max_image_pixels)[0]


@signals.worker_init.connect
def _load_model(**_: object) -> None:
    from worker import runtime

    runtime.model()


@signals.worker_ready.connect
def _announce(**_: object) -> None:
    app.backend.client.sadd(READY_KEY, os.getpid())


def worker_args(concurrency: int) -> list[str]:
    """Arguments of ``python -m celery`` that run this design's worker."""
    return ["-A", "bench.tutorial", "worker", f"--concurrency={concurrency}", "--pool=prefork",
            "-Q", QUEUE, "--without-gossip", "--without-mingle", "--loglevel=WARNING",
            "-n", f"tutorial-{os.getpid()}-{time.time_ns()}@%h"]


def run(images: list[str], redis_base: str, *, timeout_s: float = 600
        ) -> tuple[list[dict[str, Any]], float]:
    """The tutorial's client: one task per image, then ``get`` each; (items, seconds).

    A client app of its own (same broker and backend as the worker's) so the
    Redis it talks to is the one given, whatever this module was imported with.
    """
    client = make_app(redis_base)
    try:
        t0 = time.perf_counter()
        pending = [client.send_task(TASK, args=[image], queue=QUEUE) for image in images]
        items = [r.get(timeout=timeout_s) for r in pending]
        elapsed = time.perf_counter() - t0
        for r in pending:
            r.forget()
    finally:
        client.close()
    return items, elapsed
