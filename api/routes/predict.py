"""Single images: ``POST /predict``, answered by a worker through the same queue.

The request publishes one task on the predict queue and blocks on a Redis list
(BLPOP) that the worker pushes its answer to: no sleep-polling, and the answer
arrives the moment it exists.
"""

from __future__ import annotations

import orjson
from flask import Blueprint, Response
from kombu.exceptions import KombuError

from inkq import heartbeat, keys
from inkq.errors import (
    ImageTooLarge, NoWorkers, PredictTimeout, StoreUnavailable, from_dict)
from inkq.queue import PREDICT

from ..responses import json_response
from ..services import services
from ..schemas import PredictRequest
from ..validation import max_image_chars, read_body

bp = Blueprint("predict", __name__)


@bp.post("/predict")
def predict() -> Response:
    svc = services()
    s = svc.settings
    image = read_body(PredictRequest).image
    if len(image) > max_image_chars(s.max_image_bytes):
        exc = ImageTooLarge(f"The image exceeds {s.max_image_bytes} bytes.")
        exc.status_code = 413
        raise exc
    store = svc.store
    with store.guard():
        if heartbeat.alive(store.redis, s.heartbeat_s) == 0:
            raise NoWorkers("No worker is running; try again shortly.")
    request_id = store.new_id()
    try:
        svc.celery.send_task(PREDICT, args=[request_id, image], expires=s.predict_timeout_s)
    except (KombuError, OSError) as exc:
        raise StoreUnavailable(f"The queue is unavailable: {exc}") from exc
    with store.guard():
        reply = svc.blocking.blpop([keys.reply(request_id)], timeout=s.predict_timeout_s)
    if reply is None:
        raise PredictTimeout(f"No worker answered within {s.predict_timeout_s:g} s.")
    item = orjson.loads(reply[1])
    if "error" in item:
        err = from_dict(item["error"])
        err.status_code = 422
        raise err
    return json_response(item)
