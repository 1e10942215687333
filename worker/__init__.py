"""inkq's worker: preprocessing, the model, and the Celery tasks that run them.

For the model as a library::

    import worker
    worker.classify(["data:image/png;base64,..."])
    # [{"prediction": "A", "confidence": 0.97, "top5": [{"label": "A", "prob": 0.97}, ...]}]
"""

from __future__ import annotations

from typing import Any


def classify(images: list[str]) -> list[dict[str, Any]]:
    """Classify base64 PNGs (or data URLs) in this process; items as the API gives them, minus ``index``."""
    from . import runtime
    from .pipeline import classify_encoded

    s = runtime.settings()
    return classify_encoded(
        runtime.model(), images,
        max_image_bytes=s.max_image_bytes, max_image_pixels=s.max_image_pixels)


__all__ = ["classify"]
