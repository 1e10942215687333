"""Response helpers: fast JSON."""

from __future__ import annotations

from typing import Any, Mapping

import orjson
from flask import Response


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status=status, headers=dict(headers or {}),
                    mimetype="application/json")
