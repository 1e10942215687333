"""``inkq api`` serves the Flask app under gunicorn, a production WSGI server.

Threads (gthread) rather than many processes: a request mostly waits on Redis
(a /predict blocks until a worker answers), and the cores belong to the workers.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import socket
import threading
from typing import Any

from gunicorn import util as gunicorn_util
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import ThreadWorker

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


class _ClientSocket(socket.socket):
    """A client's socket whose blocking reads and writes give up after
    ``timeout_s`` without progress (gthread makes sockets blocking with no
    timeout at all)."""

    timeout_s = 20.0

    def setblocking(self, flag: bool) -> None:
        self.settimeout(self.timeout_s if flag else 0.0)


class PatientThreadWorker(ThreadWorker):
    """gthread, made to hold up against clients that stall.

    - A client that stalls in the middle of a request loses its connection
      after ``INKQ_CLIENT_TIMEOUT_S`` instead of holding one of the threads
      for good: a few dozen half-sent requests would otherwise hold them all,
      and /predict would wait behind them.
    - gunicorn closes a finished connection gracefully (half-close, then up to
      2 s of waiting for the client to close its side) on the worker's main
      thread, one connection at a time, accepting nothing meanwhile: a few
      dozen clients that keep their side open would stop it. Here each such
      close waits on a thread of its own.

    A client that keeps sending a byte now and then still holds its thread; a
    buffering reverse proxy in front is the answer to that (see the README).
    """

    def enqueue_req(self, conn: Any) -> None:
        if not isinstance(conn.sock, _ClientSocket):
            sock = conn.sock
            conn.sock = _ClientSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
            conn.sock.setblocking(False)  # as gthread left it
            conn.close = functools.partial(_close, conn)
        super().enqueue_req(conn)


def _close(conn: Any, graceful: bool = False) -> None:
    """``TConn.close``, with the graceful close's wait on a thread of its own."""
    if graceful:
        threading.Thread(target=gunicorn_util.close_graceful, args=(conn.sock,), daemon=True).start()
    else:
        gunicorn_util.close(conn.sock)


class _StalledClientLine(logging.Filter):
    """A client dropped for stalling is one warning line, not gunicorn's
    "Socket error processing request." and a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.msg == "Socket error processing request." and record.exc_info
                and isinstance(record.exc_info[1], TimeoutError)):
            record.msg, record.args, record.exc_info, record.exc_text = (
                "dropped a client that sent nothing for %s s in the middle of a request",
                (_ClientSocket.timeout_s,), None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


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
    from .jobstore import check_redis_config, connect

    check_redis_config(connect(settings.broker_url, timeout_s=2), logging.getLogger("inkq.api"))
    # The workers call gunicorn.util.write_error by module attribute.
    gunicorn_util.write_error = write_json_error
    _ClientSocket.timeout_s = settings.client_timeout_s  # the forked workers inherit it
    logging.getLogger("gunicorn.error").addFilter(_StalledClientLine())
    _Server({
        "bind": f"{host}:{port}",
        "workers": settings.api_processes,
        "worker_class": PatientThreadWorker,
        "threads": settings.api_threads,
        "timeout": 120,
        "graceful_timeout": 10,
        "keepalive": 5,
        "loglevel": settings.log_level.lower(),
        "accesslog": None,
        "errorlog": "-",
    }).run()
