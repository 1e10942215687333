"""Cross-origin access, so a web page on another site can call the API.

The API authenticates with a bearer key, never a cookie: a page of another
origin that is allowed to read the answers holds nothing a script elsewhere
with the same key would not. ``INKQ_CORS_ORIGINS`` lists the origins allowed
(``*``: any, the default; ``none``: no CORS headers, so browsers keep
other sites' pages from reading the answers).
"""

from __future__ import annotations

from flask import Flask, Response, request

ALLOW_METHODS = "GET, POST, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-API-Key"
EXPOSE_HEADERS = "Location, Retry-After"
#: How long a browser may reuse a preflight's answer.
MAX_AGE_S = 600


def allow_cross_origin(app: Flask, origins: list[str]) -> None:
    """Answer preflights (before authentication: a browser sends them without
    the key) and mark the answers of allowed origins."""
    if not origins:
        return

    def allowed(origin: str | None) -> str | None:
        if not origin:
            return None
        if "*" in origins:
            return "*"
        return origin if origin in origins else None

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        allow = allowed(request.headers.get("Origin"))
        if allow is None or request.url_rule is None:
            return None  # Flask's own answer: no CORS headers, so the browser refuses
        response = Response(status=204)
        del response.headers["Content-Type"]  # no body
        response.headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = str(MAX_AGE_S)
        return response

    @app.after_request
    def _mark(response: Response) -> Response:
        allow = allowed(request.headers.get("Origin"))
        if allow is not None:
            response.headers["Access-Control-Allow-Origin"] = allow
            response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if allow != "*":
            response.vary.add("Origin")  # the answer depends on who asks
        return response
