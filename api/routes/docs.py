"""``GET /openapi.json`` and a readable docs page for it at ``/docs`` (no CDN)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from ..openapi import document
from ..responses import json_response

bp = Blueprint("docs", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    return json_response(document())


@bp.get("/docs")
def docs() -> Response:
    return current_app.send_static_file("docs.html")
