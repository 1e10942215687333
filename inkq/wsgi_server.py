"""``inkq api`` serves the Flask app under gunicorn, a production WSGI server.

Threads (gthread) rather than many processes: a request mostly waits on Redis
(a /predict blocks until a worker answers), and the cores belong to the workers.
"""

from __future__ import annotations

from typing import Any

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


def serve(settings: Settings, host: str, port: int) -> None:
    import logging

    from .jobstore import check_redis_config, connect

    check_redis_config(connect(settings.broker_url, timeout_s=2), logging.getLogger("inkq.api"))
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
