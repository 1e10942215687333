"""The Celery tasks: thin wrappers that fetch, call the pipeline, and store.

The logic lives in :func:`run_chunk`, :func:`run_predict` and
:func:`requeue_lost`, plain functions that tests call directly with a real
store and model.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, TypeVar

import orjson
from celery.exceptions import Reject

from inkq import keys, metrics
from inkq.errors import StoreUnavailable
from inkq.jobstore import FAILED, PARTIALLY_SUCCEEDED, RUNNING, SUCCEEDED, JobStore
from inkq.queue import BULK_QUEUE, CLASSIFY_CHUNK, DELIVER_WEBHOOK, PREDICT, lost_after_s
from inkq.settings import Settings

from . import runtime
from .celery_app import app
from .model import Model
from .pipeline import classify_encoded

log = logging.getLogger(__name__)

T = TypeVar("T")
COMPLETED = (SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED)

#: A /predict reply waits this long for the API to read it.
REPLY_TTL_S = 60


def run_chunk(job_id: str, start: int, stop: int, *, store: JobStore, model: Model,
              settings: Settings, queued_at: float | None = None) -> int:
    """Classify images ``[start, stop)`` of a job and record them; returns items newly recorded."""
    ids = {"job_id": job_id, "chunk": f"{start}-{stop}"}
    claim = store.claim(job_id, start, stop, model_version=model.version)
    if queued_at is not None:
        metrics.STAGE_SECONDS.labels("queue_wait").observe(max(0.0, time.time() - queued_at))
    if claim.status != RUNNING:
        log.info("job %s chunk %d-%d skipped: job is %s", job_id, start, stop, claim.status, extra=ids)
        if claim.status in COMPLETED:
            # A redelivered chunk of a finished job: its first delivery may have
            # died between finishing the job and queueing the webhook.
            notify_if_wanted(job_id, store)
        return 0
    # Items refused at submission are stored as empty placeholders, already answered.
    todo = [i for i, image in enumerate(claim.images) if image]
    timings: dict[str, float] = {}
    items = classify_encoded(
        model, [claim.images[i] for i in todo],
        max_image_bytes=settings.max_image_bytes, max_image_pixels=settings.max_image_pixels,
        timings=timings)
    slots: list[dict[str, Any] | None] = [None] * len(claim.images)
    for i, item in zip(todo, items):
        slots[i] = item
    t0 = time.perf_counter()
    recorded = store.record(job_id, start, slots)
    timings["result_write"] = time.perf_counter() - t0
    for stage, seconds in timings.items():
        metrics.STAGE_SECONDS.labels(stage).observe(seconds)
    metrics.CHUNK_IMAGES.observe(len(claim.images))
    metrics.IMAGES.labels("classified").inc(recorded.added - recorded.failed)
    metrics.IMAGES.labels("error").inc(recorded.failed)
    if recorded.finished_job:
        metrics.JOBS_FINISHED.labels(recorded.status).inc()
    log.info("job %s chunk %d-%d: %d items recorded", job_id, start, stop, recorded.added, extra=ids)
    # The write that finished the job queues its webhook (a cancelled job's is
    # the API's to queue).
    if recorded.finished_job:
        notify_if_wanted(job_id, store)
    return recorded.added


def notify_if_wanted(job_id: str, store: JobStore) -> None:
    """Queue the completion webhook of a job that just ended, if it has one.

    Called by the chunk that finished the job and by any chunk redelivered
    after that, so a worker dying right after the last write cannot lose the
    webhook; the webhook task itself makes sure it is delivered once.
    """
    url, delivered = store.callback(job_id)
    if url and not delivered:
        app.send_task(DELIVER_WEBHOOK, args=[job_id])


def requeue_lost(store: JobStore, settings: Settings, publish: Callable[[str, int, int], object]) -> int:
    """Queue again the missing items of jobs that made no progress for longer
    than a chunk held by a dead worker takes to come back, while no chunk waits
    in the bulk queue. Returns how many chunks were queued.

    kombu's Redis transport pops a message before it records it as
    unacknowledged, so a worker killed between the two loses that chunk for
    good and its job would never finish. A chunk queued twice costs work, not
    correctness (results are written once per item), and the bulk queue being
    empty means no chunk of the job is still waiting its turn. One worker at a
    time looks, once per heartbeat.
    """
    if store.redis.llen(BULK_QUEUE):
        return 0
    if not store.lock_requeue(settings.heartbeat_s):
        return 0
    queued, after_s = 0, lost_after_s(settings)
    for job_id in store.stalled(after_s):
        ranges = store.missing(job_id, settings.chunk_size)
        for start, stop in ranges:
            publish(job_id, start, stop)
        if ranges:
            log.warning("job %s made no progress for %.0f s: %d chunks of missing items queued again",
                        job_id, after_s, len(ranges), extra={"job_id": job_id})
        queued += len(ranges)
    return queued


def run_predict(request_id: str, image: str, *, store: JobStore, model: Model,
                settings: Settings) -> dict[str, Any]:
    """Classify one image and hand the item to the API request waiting on its reply key."""
    item = classify_encoded(
        model, [image],
        max_image_bytes=settings.max_image_bytes, max_image_pixels=settings.max_image_pixels)[0]
    metrics.PREDICTIONS.labels("error" if "error" in item else "classified").inc()
    pipe = store.redis.pipeline(transaction=True)
    pipe.lpush(keys.reply(request_id), orjson.dumps(item))
    pipe.expire(keys.reply(request_id), REPLY_TTL_S)
    pipe.execute()
    return item


def riding_out_outages(fn: Callable[[], T], *, patience_s: float) -> T:
    """Call ``fn`` again while Redis is unavailable, for up to ``patience_s``.

    A chunk is idempotent, so redoing it after a Redis restart is safe; waiting
    here keeps the chunk with this worker instead of leaving it to the broker's
    visibility timeout.
    """
    deadline = time.monotonic() + patience_s
    delay = 0.1
    while True:
        try:
            return fn()
        except StoreUnavailable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unavailable (%s); retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


@app.task(name=CLASSIFY_CHUNK)
def classify_chunk(job_id: str, start: int, stop: int, queued_at: float | None = None) -> int:
    s = runtime.settings()
    try:
        return riding_out_outages(
            lambda: run_chunk(job_id, start, stop, store=runtime.store(), model=runtime.model(),
                              settings=s, queued_at=queued_at),
            patience_s=s.visibility_timeout_s / 2)
    except StoreUnavailable as exc:
        # Back on the queue (or, if Redis is still gone, left unacknowledged for
        # the visibility timeout to restore): a failed chunk is never dropped.
        raise Reject(exc, requeue=True) from exc


# A lost single prediction is not worth redelivering: its caller has given up by then.
@app.task(name=PREDICT, acks_late=False)
def predict(request_id: str, image: str) -> None:
    run_predict(request_id, image, store=runtime.store(), model=runtime.model(),
                settings=runtime.settings())
