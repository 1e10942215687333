"""Bulk jobs: submit, poll, page through results, cancel."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, request, url_for
from kombu.exceptions import KombuError

from inkq import metrics
from inkq.errors import (
    Conflict, ImageTooLarge, InvalidBase64, InvalidImage, JobNotFound, PayloadTooLarge, StoreUnavailable,
    ValidationFailed)
from inkq.jobstore import FINISHED, public
from inkq.queue import DELIVER_WEBHOOK, send_chunk
from inkq.webhooks import validate_callback_url

from ..auth import owner
from ..responses import json_response
from ..schemas import DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE, JobCreate
from ..services import services
from ..validation import max_image_chars, read_body

bp = Blueprint("jobs", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

def present(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored job document as the API shows it: ISO timestamps and links."""
    return public(doc, request.script_root)


def parse_callback(body: JobCreate) -> str | None:
    s = services().settings
    if body.callback_url is None:
        return None
    if not s.webhook_secret:
        raise ValidationFailed('"callback_url" needs webhooks configured (INKQ_WEBHOOK_SECRET).')
    return validate_callback_url(body.callback_url, s.webhook_hosts)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def parse_images(body: JobCreate) -> tuple[list[str], dict[int, dict[str, str]]]:
    """Check a job's limits; returns the images and the items refused up front."""
    s = services().settings
    images = body.images
    if len(images) > s.max_images_per_job:
        raise PayloadTooLarge(
            f"A job holds at most {s.max_images_per_job} images; this one has {len(images)}.",
            limit=s.max_images_per_job)
    max_chars = max_image_chars(s.max_image_bytes)
    rejected: dict[int, dict[str, str]] = {}
    for i, image in enumerate(images):
        if not isinstance(image, str):
            rejected[i] = InvalidBase64(
                f"The item is {_json_kind(image)}, not a base64 string or data URL.").to_dict()
            images[i] = ""
        elif not image:
            rejected[i] = InvalidImage("The image is empty.").to_dict()
        elif len(image) > max_chars:
            rejected[i] = ImageTooLarge(f"The image exceeds {s.max_image_bytes} bytes.").to_dict()
            images[i] = ""
    return images, rejected


@bp.post("/jobs")
def create_job() -> Response:
    svc = services()
    body = read_body(JobCreate, svc.settings.max_images_per_job)
    images, rejected = parse_images(body)
    callback_url = parse_callback(body)
    who = owner()
    idem_key = request.headers.get("Idempotency-Key")
    job_id = svc.store.new_id()
    if idem_key:
        if len(idem_key) > 255:
            raise ValidationFailed("Idempotency-Key is at most 255 characters.")
        existing = svc.store.remember_idempotency(who, idem_key, job_id)
        if existing is not None:
            doc = svc.store.get(existing, owner=who)
            if doc is None:
                raise Conflict("A job with this Idempotency-Key is still being created; retry shortly.")
            return _job_response(doc, 200)
    try:
        doc = svc.store.create(images, owner=who, rejected=rejected, job_id=job_id,
                               model_version=svc.store.model_version(), callback_url=callback_url)
        if doc["status"] not in FINISHED:
            publish_chunks(job_id, len(images), svc.settings.chunk_size)
        elif callback_url:  # every item refused up front: the job ended already
            notify(job_id)
    except (StoreUnavailable, KombuError, OSError) as exc:
        _undo(job_id, who, idem_key)
        if isinstance(exc, StoreUnavailable):
            raise
        raise StoreUnavailable(f"The queue is unavailable: {exc}") from exc
    metrics.JOBS_SUBMITTED.inc()
    metrics.IMAGES.labels("error").inc(len(rejected))
    if doc["status"] in FINISHED:
        metrics.JOBS_FINISHED.labels(doc["status"]).inc()
    log.info("job %s queued: %d images, %d refused up front", job_id, len(images), len(rejected),
             extra={"job_id": job_id})
    return _job_response(doc, 202)


def publish_chunks(job_id: str, total: int, chunk_size: int) -> None:
    celery = services().celery
    now = time.time()
    with celery.producer_or_acquire() as producer:
        for start in range(0, total, chunk_size):
            send_chunk(celery, job_id, start, min(start + chunk_size, total), now, producer=producer)


def notify(job_id: str) -> None:
    """Queue the job's completion webhook (the notifier delivers it, never a request)."""
    services().celery.send_task(DELIVER_WEBHOOK, args=[job_id])


def _undo(job_id: str, who: str, idem_key: str | None) -> None:
    """Best effort: a job whose chunks could not be queued must not linger as queued."""
    store = services().store
    try:
        store.delete(job_id)
        if idem_key:
            store.forget_idempotency(who, idem_key)
    except StoreUnavailable:
        pass


def _job_response(doc: dict[str, Any], status: int) -> Response:
    body = present(doc)
    return json_response(body, status, {"Location": body["links"]["self"]})


def _job_or_404(job_id: str) -> dict[str, Any]:
    doc = services().store.get(job_id, owner=owner())
    if doc is None:
        shown = job_id if len(job_id) <= 40 else job_id[:40] + "..."  # ids are 26 characters
        raise JobNotFound(f"No job {shown!r} (unknown, expired, or not yours).")
    return doc


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return json_response(present(_job_or_404(job_id)))


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed(f"{name} must be an integer.") from None
    if not lo <= value <= hi:
        raise ValidationFailed(f"{name} must be between {lo} and {hi}.")
    return value


@bp.get("/jobs/<job_id>/results")
def get_results(job_id: str) -> Response:
    offset = _int_arg("offset", 0, 0, MAX_OFFSET)
    limit = _int_arg("limit", DEFAULT_PAGE, 1, MAX_PAGE)
    doc = _job_or_404(job_id)
    total = doc["total"]
    items = services().store.results(job_id, offset, limit, total)
    nxt = None
    if offset + limit < total:
        nxt = url_for("jobs.get_results", job_id=job_id, offset=offset + limit, limit=limit)
    return json_response({"items": items, "next": nxt, "offset": offset, "limit": limit,
                          "total": total, "status": doc["status"]})


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    before = _job_or_404(job_id)
    services().store.cancel(job_id)
    after = _job_or_404(job_id)
    if before["status"] not in FINISHED and after["status"] == "cancelled":
        metrics.JOBS_FINISHED.labels("cancelled").inc()
    if before["status"] not in FINISHED and after["callback_url"]:
        try:
            notify(job_id)
        except (KombuError, OSError) as exc:
            raise StoreUnavailable(f"The queue is unavailable: {exc}") from exc
    return json_response(present(after))


@bp.get("/limits")
def limits() -> Response:
    s = services().settings
    return json_response({
        "max_images_per_job": s.max_images_per_job,
        "max_request_bytes": s.max_request_bytes,
        "max_image_bytes": s.max_image_bytes,
        "max_image_pixels": s.max_image_pixels,
        "formats": ["png", "jpeg", "gif", "bmp", "webp"],
    })
