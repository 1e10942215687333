"""Response helpers: fast JSON, timestamps as ISO 8601 UTC."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

import orjson
from flask import Response


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=dict(headers or {}),
                    mimetype="application/json")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
