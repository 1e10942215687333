"""Shared fixtures: a real redis-server, real Celery worker processes, the real API.

Nothing is faked: the service fixtures start the same commands an operator runs
(``inkq worker``, ``inkq api``) against an embedded redis-server. When EMNIST
data or a service cannot be had, tests fail under CI and skip (with the reason)
only on a developer machine.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import httpx
import numpy as np
import pytest
import redis

from inkq.embedded_redis import EmbeddedRedis, free_port
from inkq.procs import child_env, popen_child, python_module, stop_all

ROOT = Path(__file__).resolve().parents[1]
EMNIST_DIR = Path(os.environ.get("INKQ_EMNIST_DIR", ROOT.parent / "shared" / "emnist"))
IN_CI = bool(os.environ.get("CI"))

#: Settings the service fixtures run with: fast heartbeats, several chunks per job.
SERVICE_ENV = {
    "INKQ_HEARTBEAT_S": "0.5",
    "INKQ_CHUNK_SIZE": "32",
    "INKQ_WORKER_CONCURRENCY": "2",
    "INKQ_LOG_LEVEL": "INFO",
}


def compiler_found() -> bool:
    """Whether a C compiler is on this machine: where one is, the optional C
    extensions (``worker._fastpng``, ``worker._features``, ``worker._euler``) must
    have been built."""
    import shlex
    import shutil
    import sysconfig

    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    return bool(cc) and shutil.which(cc[0]) is not None


def require(condition: bool, reason: str) -> None:
    """Skip locally, fail in CI: a missing prerequisite must never pass silently."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def emnist_dir() -> Path:
    require((EMNIST_DIR / "emnist-47-test-images-idx3-ubyte.gz").exists(),
            f"EMNIST data not found in {EMNIST_DIR}")
    return EMNIST_DIR


@pytest.fixture(scope="session")
def emnist_test(emnist_dir: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from worker.emnist import load_mapping, load_split

    X, y = load_split(emnist_dir, "test")
    return X, y, load_mapping(emnist_dir)


@dataclass
class Service:
    """A running inkq: ``url`` of the API, ``redis`` client, the processes and their logs."""

    url: str
    redis_url: str
    redis: redis.Redis
    procs: dict[str, subprocess.Popen]
    log_dir: Path
    env: dict[str, str]
    server: EmbeddedRedis | None = None  # set when the service has a Redis of its own

    def logs(self, name: str, tail: int = 3000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def start_process(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "ab")
    return popen_child(python_module("inkq.cli", *args), env=child_env(env), stdout=log,
                       stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def start_service(redis_url: str, log_dir: Path, env: dict[str, str] | None = None,
                  workers: int = 1) -> Service:
    """``workers`` separate ``inkq worker`` processes (each in its own session, so a
    test can kill one with its pool), the webhook notifier and one ``inkq api``."""
    port = free_port()
    env = {**SERVICE_ENV, "INKQ_METRICS_DIR": str(log_dir / "metrics"), **(env or {}),
           "REDIS_URL": redis_url}
    procs = {"api": start_process("api", ["api", "--port", str(port)], env, log_dir)}
    for n in range(workers):
        procs[f"worker{n}"] = start_process(f"worker{n}", ["worker"], env, log_dir)
    procs["notifier"] = start_process("notifier", ["notifier"], env, log_dir)
    service = Service(url=f"http://127.0.0.1:{port}", redis_url=redis_url,
                      redis=redis.Redis.from_url(redis_url), procs=procs, log_dir=log_dir, env=env)
    try:
        wait_until(lambda: ready(service.url) or any(p.poll() is not None for p in procs.values()),
                   120, "the service to be ready")
        dead = [n for n, p in procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{dead} exited:\n" + "\n".join(service.logs(n) for n in dead))
    except BaseException:
        stop_all(list(procs.values()))
        raise
    return service


@contextmanager
def own_service(tmp_path: Path, env: dict[str, str] | None = None,
                before_start: Callable[[redis.Redis], None] | None = None) -> Iterator[Service]:
    """A whole service on its own Redis (AOF on), for tests that break things or must not
    share workers; ``before_start`` may configure Redis first. ``service.server`` is the Redis."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    service = None
    try:
        if before_start is not None:
            before_start(redis.Redis.from_url(server.url))
        service = start_service(server.url, tmp_path, env)
        service.server = server
        yield service
    finally:
        if service is not None:
            stop_all(list(service.procs.values()))
            server = service.server  # a test may have restarted Redis
        server.stop()


@contextmanager
def extra_api(service: Service, name: str, env: dict[str, str]) -> Iterator[str]:
    """Another ``inkq api`` process with ``env`` on top of the service's, on its Redis
    and workers; yields its URL."""
    port = free_port()
    proc = start_process(name, ["api", "--port", str(port)], {**service.env, **env}, service.log_dir)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready(url) or proc.poll() is not None, 60, f"the {name} API")
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{service.logs(name)}")
        yield url
    finally:
        stop_all([proc])


@pytest.fixture(scope="session")
def live_service(redis_server: EmbeddedRedis, tmp_path_factory) -> Iterator[Service]:
    """Real Celery workers (one worker, two pool processes) and the API under gunicorn."""
    service = start_service(redis_server.url, tmp_path_factory.mktemp("logs"))
    try:
        yield service
    finally:
        stop_all(list(service.procs.values()))


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


@pytest.fixture(scope="session")
def canvas_pngs(emnist_test) -> list[tuple[bytes, str]]:
    """240 test-set images rendered as browser canvas PNGs in every style, with labels."""
    from worker.render import render_canvas

    X, y, labels = emnist_test
    rng = np.random.default_rng(2024)
    picks = rng.choice(len(X), size=240, replace=False)
    return [(render_canvas(X[i], rng), labels[y[i]]) for i in picks]


@pytest.fixture(scope="session")
def clear_pngs() -> list[tuple[bytes, str]]:
    """Clearly drawn characters: round-pen strokes on a transparent 280x280 canvas."""
    from tests.drawing import CLEAR, draw

    return [(draw(strokes), char) for char, strokes in CLEAR.items()]
