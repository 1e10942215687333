"""The Celery app both halves share, and the names that connect them.

The API publishes tasks by name through this app and never imports the worker
code; the worker registers the task bodies (``worker.tasks``) on the same app.
Task arguments are small JSON: a job id and an index range, never images (those
are stored once in Redis), except a single ``/predict`` image.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from .settings import Settings
from .transport import transport_for

CLASSIFY_CHUNK = "inkq.classify_chunk"
PREDICT = "inkq.predict"
DELIVER_WEBHOOK = "inkq.deliver_webhook"

#: Bulk chunks and single predictions travel on their own queues, so a person
#: drawing on the page never waits behind a queue of someone's bulk chunks.
BULK_QUEUE = "inkq.bulk"
PREDICT_QUEUE = "inkq.predict"
#: Webhooks go to the notifier (a thread-pool worker), so a slow receiver never
#: holds a process that classifies images.
WEBHOOK_QUEUE = "inkq.webhooks"
#: Seconds the broker's lock on a sweep for chunks of dead workers lives if its
#: holder dies (see ``broker_transport_options`` below).
UNACKED_MUTEX_EXPIRE_S = 5


def restore_interval_s(settings: Settings) -> int:
    """Seconds between the broker's sweeps for chunks held by dead workers."""
    return max(1, min(10, settings.visibility_timeout_s // 4))


def lost_after_s(settings: Settings) -> float:
    """Seconds without progress after which a job's missing chunks count as lost:
    longer than any chunk held by a dead worker takes to come back."""
    return settings.visibility_timeout_s + 2 * restore_interval_s(settings) + 2 * settings.heartbeat_s


def send_chunk(celery: Celery, job_id: str, start: int, stop: int, queued_at: float, *,
               producer: Any = None) -> None:
    """Queue items ``[start, stop)`` of a job for classification, stamped with
    the time they were queued (the API's submit, the workers' search for lost
    chunks: both speak the task's arguments through here)."""
    celery.send_task(CLASSIFY_CHUNK, args=[job_id, start, stop, queued_at], producer=producer)


def make_celery(settings: Settings, *, include: list[str] | None = None,
                publish_timeout_s: float = 5.0) -> Celery:
    """A Celery app configured from ``settings`` (JSON only, acks late, no result backend).

    ``publish_timeout_s`` bounds each broker socket call: the API passes its short
    Redis timeout so a stalled Redis turns into a quick 503 rather than a hang.
    """
    app = Celery("inkq", broker=settings.broker_url, include=include or [])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        # A worker killed mid-chunk must not lose it: acknowledge after the work,
        # requeue when the pool child dies, and reserve one chunk at a time.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Sweep for chunks held by dead workers every few seconds (kombu's
            # default is 10 s x throttle 10): a lost chunk then comes back at most
            # this much after its visibility timeout.
            "unacked_restore_interval": restore_interval_s(settings),
            "unacked_restore_throttle": 1,
            # Each sweep holds a lock in Redis that expires after this; kombu's
            # default is 300 s, so a worker killed in the middle of a sweep
            # would hold up every redelivery for five minutes. A sweep takes
            # milliseconds, and should two overlap, a chunk delivered twice is
            # still counted once.
            "unacked_mutex_expire": UNACKED_MUTEX_EXPIRE_S,
            "socket_timeout": publish_timeout_s,
            "socket_connect_timeout": min(2.0, publish_timeout_s),
            "retry_on_timeout": True,
            "health_check_interval": 10,
            # Consume queues in the order given (predict first), not round robin.
            "queue_order_strategy": "priority",
        },
        # Drops a message that is not kombu's instead of stopping the worker.
        broker_transport=transport_for(settings.broker_url),
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        broker_connection_max_retries=None,
        # Publishing fails fast when Redis is gone, so the API can answer 503.
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2},
        task_default_queue=BULK_QUEUE,
        task_routes={CLASSIFY_CHUNK: {"queue": BULK_QUEUE}, PREDICT: {"queue": PREDICT_QUEUE},
                     DELIVER_WEBHOOK: {"queue": WEBHOOK_QUEUE}},
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_mb * 1024,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app
