"""inkq's HTTP API: a thin Flask app that validates, stores and queues.

It never imports numpy, scikit-learn or Pillow: images are checked for shape
and size only, stored once in Redis, and classified by workers reached through
Celery task names and the job store.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from inkq import metrics  # noqa: F401  (first: picks the multiprocess metrics folder)
from inkq.settings import Settings

from .errors import guard_body_reads, register_error_handlers
from .services import Services

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """The application factory: settings from the environment unless given, then overrides."""
    settings = settings or Settings.from_env()
    if overrides:
        settings = settings.replace(**overrides)
    app = Flask(__name__, static_folder="static", static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    # A job's images may come as files of a multipart form, one part each.
    app.config["MAX_FORM_PARTS"] = settings.max_images_per_job + 64
    # ... or as base64 in its text fields, which werkzeug would hold to 500 kB
    # each (a 413 naming the body's limit); the body's own limit bounds them,
    # and an image too large is the same error whichever way it came.
    app.config["MAX_FORM_MEMORY_SIZE"] = settings.max_request_bytes
    app.extensions["inkq"] = Services.create(settings)

    register_error_handlers(app)
    app.wsgi_app = guard_body_reads(app.wsgi_app)  # type: ignore[method-assign]
    if settings.proxies:  # the client's address, scheme, host and path as the proxies saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = settings.proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)  # type: ignore[method-assign]

    from .auth import authenticate
    from .cors import allow_cross_origin
    from .observe import observe_requests
    from .routes import docs, health, jobs, metrics as metrics_route, page, predict

    allow_cross_origin(app, settings.cors_origin_list)
    app.before_request(authenticate)
    observe_requests(app)
    for module in (health, jobs, predict, metrics_route, docs, page):
        app.register_blueprint(module.bp)
    return app
