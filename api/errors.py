"""JSON errors everywhere: ``{"error": {"code", "message"}}`` with the right status."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, HTTPException

from inkq.errors import InkqError, RateLimited

from .responses import json_response

log = logging.getLogger(__name__)


#: Codes for HTTP errors whose Werkzeug names differ from our own vocabulary.
_CODES = {413: "payload_too_large"}


def _code(exc: HTTPException) -> str:
    if exc.code in _CODES:
        return _CODES[exc.code]
    name = exc.name or "error"
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(InkqError)
    def inkq_error(exc: InkqError) -> Response:
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        if exc.status_code >= 500 and exc.status_code != 503:
            log.error("request failed: %s", exc)
        return json_response({"error": exc.to_dict()}, exc.status_code, headers)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        message = exc.description or exc.name
        if exc.code == 413:
            message = _too_large(app.config["MAX_CONTENT_LENGTH"], app.config["MAX_FORM_PARTS"])
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return json_response({"error": {"code": _code(exc), "message": message}}, exc.code or 500, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return json_response({"error": {"code": "internal_error", "message": "Internal error."}}, 500)


def _too_large(max_bytes: int, max_parts: int) -> str:
    """werkzeug's 413 says only "too large": a body that fits (its length is
    known) was refused for the number of a form's parts."""
    length = request.content_length
    if length is not None and length <= max_bytes:
        return f"The form holds more than {max_parts} parts."
    return f"The request body exceeds {max_bytes} bytes."


class _GuardedInput:
    """``wsgi.input`` whose read errors are the client's: the WSGI server raises
    its own exceptions for a body it cannot decode (gunicorn: a malformed
    chunk of a chunked upload), which werkzeug lets through, and they would
    end as a 500. Here they are a 400 ``bad_request``."""

    def __init__(self, stream: Any):
        self._stream = stream

    def _guarded(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except HTTPException:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever the server raises for a bad body
            raise BadRequest(f"The request body could not be read: {exc}") from exc

    def read(self, *args: Any) -> bytes:
        return self._guarded("read", *args)

    def readline(self, *args: Any) -> bytes:
        return self._guarded("readline", *args)

    def readlines(self, *args: Any) -> list[bytes]:
        return self._guarded("readlines", *args)

    def __iter__(self) -> Iterable[bytes]:
        return iter(self.readline, b"")


def guard_body_reads(wsgi_app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """WSGI middleware: the request body is read through :class:`_GuardedInput`."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    return app
