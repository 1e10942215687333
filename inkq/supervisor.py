"""``inkq up``: the whole service in the foreground, and nothing left behind.

Starts an embedded Redis (unless REDIS_URL is set), one ``inkq worker`` with N
pool processes, a one-process worker for single predictions, the webhook
``inkq notifier`` and ``inkq api`` under gunicorn, waits until /readyz says ready,
prints the URL, and on Ctrl-C or SIGTERM stops the API, then the workers (they
finish or requeue their chunks), then Redis (which flushes its append-only file).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

from .embedded_redis import EmbeddedRedis
from .procs import child_env, popen_child, python_module, stop_all
from .settings import Settings

READY_TIMEOUT_S = 120


def wait_ready(url: str, procs: list[subprocess.Popen], timeout_s: float, stop: threading.Event) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        if any(p.poll() is not None for p in procs):
            return False
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        stop.wait(0.2)
    return False


def fresh_metrics_dir(path: Path) -> Path:
    """The metrics folder emptied of a previous run's files (counters restart at zero)."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()
    return path


def run(settings: Settings, host: str, port: int, workers: int | None) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    embedded = None
    env: dict[str, str] = {}
    if not settings.redis_url:
        embedded = EmbeddedRedis(settings.data_dir / "redis").start()
        env["REDIS_URL"] = embedded.url
        click.echo(f"embedded Redis on {embedded.url} (data in {embedded.data_dir})", err=True)
    n = workers or settings.worker_concurrency or os.cpu_count() or 1
    env["INKQ_WORKER_CONCURRENCY"] = str(n)
    if "INKQ_METRICS_DIR" not in os.environ and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        env["INKQ_METRICS_DIR"] = str(fresh_metrics_dir(settings.data_dir / "metrics"))

    procs: list[subprocess.Popen] = []
    code = 0
    try:
        procs.append(popen_child(python_module("inkq.cli", "api", "--host", host, "--port", str(port)),
                                 env=child_env(env)))
        procs.append(popen_child(python_module("inkq.cli", "worker"), env=child_env(env)))
        # One process kept for single predictions: a person drawing never waits for
        # a bulk chunk to finish first. It idles otherwise.
        procs.append(popen_child(python_module("inkq.cli", "worker", "--queues", "predict",
                                               "--concurrency", "1"), env=child_env(env)))
        procs.append(popen_child(python_module("inkq.cli", "notifier"), env=child_env(env)))
        url = f"http://{host}:{port}"
        if wait_ready(url, procs, READY_TIMEOUT_S, stop):
            click.echo(f"\ninkq is up: {url}  ({n} worker processes; Ctrl-C to stop)\n", err=True)
        elif not stop.is_set():
            click.echo("inkq did not become ready; stopping.", err=True)
            code = 1
            stop.set()
        while not stop.is_set():
            if any(p.poll() is not None for p in procs):
                click.echo("a service process exited; stopping.", err=True)
                code = 1
                break
            stop.wait(0.5)
    finally:
        click.echo("stopping inkq ...", err=True)
        stop_all(procs)  # SIGTERM to all: workers finish (or requeue) their chunks
        if embedded is not None:
            embedded.stop()
        click.echo("stopped.", err=True)
    return code
