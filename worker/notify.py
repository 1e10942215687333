"""The completion-webhook task, run by the notifier (``inkq notifier``).

Delivery is at least once from the queue's point of view and once in effect:
a delivery that succeeded is recorded in the job (``webhook_delivered_at``) and
never repeated. Failures are retried with exponential backoff and jitter, up
to ``INKQ_WEBHOOK_MAX_ATTEMPTS``.
"""

from __future__ import annotations

import logging
import random

import httpx
import orjson

from inkq.jobstore import FINISHED, JobStore, public
from inkq.queue import DELIVER_WEBHOOK
from inkq.settings import Settings
from inkq.webhooks import deliver

from . import runtime
from .celery_app import app

log = logging.getLogger(__name__)

#: Longest wait between two attempts.
MAX_BACKOFF_S = 300


class DeliveryFailed(Exception):
    """The receiver could not be reached or did not answer 2xx."""


def run_webhook(job_id: str, attempt: int, *, store: JobStore, settings: Settings) -> str:
    """Deliver the job's webhook once; returns what happened (for logs and tests)."""
    url, delivered = store.callback(job_id)
    doc = store.get(job_id)
    if url is None or doc is None:
        return "no_callback"
    if delivered:
        return "already_delivered"
    if doc["status"] not in FINISHED:
        return "not_finished"
    if not settings.webhook_secret:  # never send an unsigned webhook: another notifier may have the key
        raise DeliveryFailed("this notifier has no INKQ_WEBHOOK_SECRET to sign with")
    if not store.lock_webhook(job_id, settings.webhook_timeout_s + 5):
        raise DeliveryFailed("another delivery of this webhook is in flight")
    try:
        if store.callback(job_id)[1]:
            return "already_delivered"
        body = orjson.dumps(public(doc))
        try:
            status = deliver(url, body, secret=settings.webhook_secret,
                             delivery_id=f"{job_id}.{attempt}", timeout_s=settings.webhook_timeout_s)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if not 200 <= status < 300:
            raise DeliveryFailed(f"receiver answered {status}")
        store.mark_delivered(job_id)
        return "delivered"
    finally:
        store.unlock_webhook(job_id)


def backoff_s(attempt: int) -> float:
    """1 s, 2 s, 4 s, ... capped, with +-20% jitter so retries don't stampede."""
    return min(MAX_BACKOFF_S, 2.0 ** attempt) * random.uniform(0.8, 1.2)


@app.task(name=DELIVER_WEBHOOK, bind=True, max_retries=None)
def deliver_webhook(self, job_id: str) -> str:
    s = runtime.settings()
    attempt = self.request.retries
    try:
        outcome = run_webhook(job_id, attempt, store=runtime.store(), settings=s)
    except DeliveryFailed as exc:
        if attempt + 1 >= s.webhook_max_attempts:
            log.error("webhook for job %s given up after %d attempts: %s", job_id, attempt + 1, exc,
                      extra={"job_id": job_id})
            return "gave_up"
        delay = backoff_s(attempt)
        log.warning("webhook for job %s failed (%s); retry in %.1f s", job_id, exc, delay,
                    extra={"job_id": job_id})
        raise self.retry(countdown=delay, exc=exc)
    log.info("webhook for job %s: %s", job_id, outcome, extra={"job_id": job_id})
    return outcome
