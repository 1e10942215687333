"""``inkq api`` serves the Flask app under gunicorn, a production WSGI server.

Threads (gthread) rather than many processes: a request mostly waits on Redis
(a /predict blocks until a worker answers), and the cores belong to the workers.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication

from .settings import Settings


class _Server(BaseApplication):
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):  # noqa: ANN201 - a WSGI app
        from api import create_app

        return create_app()


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answers to requests it cannot parse (a request line over
    its limit, broken headers), which never reach the app, in the API's JSON
    error shape instead of an HTML page. Same signature as ``gunicorn.util.write_error``."""
    code = "internal_error" if status_int == 500 else re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")
    message = (mesg or reason)[:300]
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    gunicorn_util.write_nonblock(sock, head.encode("latin-1") + body)


def serve(settings: Settings, host: str, port: int) -> None:
    import logging

    from .jobstore import check_redis_config, connect

    check_redis_config(connect(settings.broker_url, timeout_s=2), logging.getLogger("inkq.api"))
    # The workers call gunicorn.util.write_error by module attribute.
    gunicorn_util.write_error = write_json_error
    _Server({
        "bind": f"{host}:{port}",
        "workers": settings.api_processes,
        "worker_class": "gthread",
        "threads": settings.api_threads,
        "timeout": 120,
        "graceful_timeout": 10,
        "keepalive": 5,
        "loglevel": settings.log_level.lower(),
        "accesslog": None,
        "errorlog": "-",
    }).run()
