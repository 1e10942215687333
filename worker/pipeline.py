"""The work itself: encoded images in, result items out, one model call per batch.

Pure functions of their inputs (plus the model), so tests, benchmarks and the
Celery tasks all run exactly the same code. A bad image becomes an item error
in its slot; it never fails the batch.
"""

from __future__ import annotations

import binascii
import logging
import time
from typing import Any, Sequence

import numpy as np

from inkq.errors import ImageTooLarge, InvalidBase64, InvalidImage, ItemError

from .model import Model
from .preprocess import preprocess

log = logging.getLogger(__name__)

TOP_K = 5
#: Probabilities are rounded for the API; 4 decimals keep the stored results small.
PROB_DECIMALS = 4


#: base64url's two letters, as standard base64's.
_URLSAFE = bytes.maketrans(b"-_", b"+/")


def decode_base64(text: bytes | str, *, max_bytes: int) -> bytes:
    """The image bytes of a base64 string or ``data:`` URL, size-checked before decoding.

    Strict base64 first (the common case, fastest); failing that, what clients
    also send: lines wrapped MIME-style, the URL-safe alphabet (``-`` and
    ``_``), the padding left off. A data URL's ``data:`` and ``;base64`` may be
    in any case (URL schemes and media types are case-insensitive).
    """
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidBase64("The image is not base64 text.") from None
    if text[:5].lower() == b"data:":
        comma = text.find(b",", 0, 256)
        if comma < 0 or not text[5:comma].lower().endswith(b";base64"):
            raise InvalidBase64("A data URL must look like data:image/png;base64,<data>.")
        text = text[comma + 1:]
    if len(text) // 4 * 3 > max_bytes:
        raise ImageTooLarge(f"The image exceeds {max_bytes} bytes.")
    if not text:
        raise InvalidImage("The image is empty.")
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        pass
    text = b"".join(text.split()).translate(_URLSAFE)
    text += b"=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidBase64("The image is not valid base64.") from None


def top_items(probs: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """Result items (prediction, confidence, top 5) from a batch of probabilities."""
    best = np.argsort(-probs, axis=1, kind="stable")[:, :TOP_K]
    # float64 before rounding: a rounded float32 prints as 0.9843000173568726.
    picked = np.round(np.take_along_axis(probs, best, axis=1).astype(np.float64), PROB_DECIMALS).tolist()
    items = []
    for row, ps in zip(best.tolist(), picked):
        top5 = [{"label": labels[c], "prob": p} for c, p in zip(row, ps)]
        items.append({"prediction": top5[0]["label"], "confidence": top5[0]["prob"], "top5": top5})
    return items


def classify_encoded(
    model: Model,
    images: Sequence[bytes | str],
    *,
    max_image_bytes: int,
    max_image_pixels: int,
    timings: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Classify base64 images (or data URLs): one item per input, in order.

    ``timings``, if given, receives the seconds spent in ``decode_preprocess`` and
    ``inference``.
    """
    t0 = time.perf_counter()
    items: list[dict[str, Any] | None] = [None] * len(images)
    arrays: list[np.ndarray] = []
    slots: list[int] = []
    for i, text in enumerate(images):
        try:
            png = decode_base64(text, max_bytes=max_image_bytes)
            arrays.append(preprocess(png, max_pixels=max_image_pixels))
            slots.append(i)
        except ItemError as exc:
            items[i] = {"error": exc.to_dict()}
        except Exception as exc:  # a bug must cost one item, never the chunk
            log.exception("unexpected error preprocessing item %d", i)
            items[i] = {"error": InvalidImage(f"The image could not be processed ({type(exc).__name__}).").to_dict()}
    t1 = time.perf_counter()
    if arrays:
        probs = model.predict_proba(np.stack(arrays))
        for i, item in zip(slots, top_items(probs, model.labels)):
            items[i] = item
    if timings is not None:
        timings["decode_preprocess"] = t1 - t0
        timings["inference"] = time.perf_counter() - t1
    return items  # type: ignore[return-value]
