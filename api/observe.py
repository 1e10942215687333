"""Request metrics and access logs for every API request (never bodies or keys).

Access logs are at DEBUG (``INKQ_LOG_LEVEL=DEBUG``): polling clients would
otherwise drown the log; job creation and errors are logged at INFO elsewhere.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from inkq import metrics

log = logging.getLogger("inkq.api.access")


def observe_requests(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        metrics.HTTP_SECONDS.labels(route).observe(elapsed)
        job_id = (request.view_args or {}).get("job_id")
        extra = {"job_id": job_id} if job_id else {}
        log.debug("%s %s %d %.1fms", request.method, route, response.status_code, elapsed * 1000,
                 extra=extra)
        return response
