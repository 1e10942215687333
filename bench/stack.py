"""The benchmark's own inkq: an embedded redis-server, one ``inkq api``, ``inkq worker`` s.

Started with the same commands an operator runs (``inkq api``, ``inkq worker``),
configured from the environment like them, so the numbers are the service's.
Workers can be stopped and started again with another concurrency while Redis
and the API keep running (the scaling and memory rows need that).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import httpx
import psutil
import redis

from inkq import keys
from inkq.embedded_redis import EmbeddedRedis, free_port
from inkq.procs import child_env, popen_child, python_module, stop_all
from inkq.queue import BULK_QUEUE, PREDICT_QUEUE

ROOT = Path(__file__).resolve().parents[1]

#: Settings the bench runs the service with, unless the environment says otherwise.
#: Fast heartbeats make a started worker count as ready sooner; the rate limit is
#: kept on (its Redis calls are part of every request) but set out of reach.
BENCH_ENV = {
    "INKQ_HEARTBEAT_S": "0.5",
    "INKQ_RATE_LIMIT_PER_MIN": str(10**9),
    "INKQ_LOG_LEVEL": "WARNING",
}


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str,
               interval_s: float = 0.05) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


class Stack:
    """Redis + API, and workers on demand. Use as a context manager."""

    def __init__(self, *, env: dict[str, str] | None = None, run_dir: Path | None = None,
                 appendonly: bool = True):
        self._own_dir = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="inkq-bench-"))
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis_server = EmbeddedRedis(self.run_dir / "redis", appendonly=appendonly)
        self.extra_env = {**BENCH_ENV, **{k: v for k, v in os.environ.items() if k.startswith("INKQ_")},
                          **(env or {})}
        self.api: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.others: list[subprocess.Popen] = []
        self.port = free_port()
        self.redis: redis.Redis | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_url(self) -> str:
        return self.redis_server.url

    @property
    def env(self) -> dict[str, str]:
        return {**self.extra_env, "REDIS_URL": self.redis_url}

    def __enter__(self) -> "Stack":
        self.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        # Redis's append-only file grows by every image stored (GBs over a full
        # run): always dropped. The logs are kept when something went wrong.
        shutil.rmtree(self.run_dir / "redis", ignore_errors=True)
        if exc_type is None and self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif exc_type is not None:
            import sys

            print(f"bench: the stack's logs are in {self.log_dir}", file=sys.stderr)

    def start(self) -> "Stack":
        self.redis_server.start()
        self.redis = redis.Redis.from_url(self.redis_url)
        self.api = self._spawn("api", ["api", "--port", str(self.port)])
        wait_until(lambda: self._healthy() or self.api.poll() is not None, 60, "the API")
        if self.api.poll() is not None:
            raise RuntimeError("inkq api exited:\n" + self.log("api"))
        return self

    def stop(self) -> None:
        stop_all([p for p in [*self.workers, *self.others, self.api] if p is not None])
        self.workers, self.others, self.api = [], [], None
        self.redis_server.stop()

    def _spawn(self, name: str, args: list[str], module: str = "inkq.cli",
               env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        return popen_child(python_module(module, *args), env=child_env(env or self.env),
                           stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # -- workers

    def start_workers(self, concurrency: int, *, processes: int = 1, timeout_s: float = 120) -> None:
        """``processes`` ``inkq worker`` commands of ``concurrency`` pool processes each;
        returns once every one of them beats (model loaded, pool forked)."""
        env = {**self.env, "INKQ_WORKER_CONCURRENCY": str(concurrency)}
        new = [self._spawn(f"worker{len(self.workers) + i}", ["worker", "--concurrency", str(concurrency)],
                           env=env) for i in range(processes)]
        self.workers += new
        host = socket.gethostname()

        def ready() -> bool:
            dead = [p for p in new if p.poll() is not None]
            if dead:
                raise RuntimeError("inkq worker exited:\n" + "\n".join(
                    self.log(f"worker{self.workers.index(p)}") for p in dead))
            return all(self.redis.zscore(keys.workers(), f"{host}:{p.pid}") is not None for p in new)

        wait_until(ready, timeout_s, "the workers to beat")
        # The pool children exist once the worker announces itself; wait until
        # each has them all.
        wait_until(lambda: all(len(psutil.Process(p.pid).children()) >= concurrency for p in new),
                   timeout_s, "the worker pools")

    def start_predictor(self) -> None:
        """The one-process worker for /predict that ``inkq up`` and Compose run."""
        self.others.append(self._spawn("predictor", ["worker", "--queues", "predict", "--concurrency", "1"]))

    def stop_workers(self) -> None:
        stop_all(self.workers)
        host = socket.gethostname()
        for p in self.workers:  # a SIGKILLed worker leaves its heartbeat entry behind
            self.redis.zrem(keys.workers(), f"{host}:{p.pid}")
        self.workers = []

    def service_processes(self) -> Iterator[psutil.Process]:
        """Every process of the stack but the workers' pool children: Redis, the
        API and its workers, the worker main processes, the predictor, the notifier."""
        pids = [self.redis.info("server")["process_id"]] if self.redis is not None else []
        for p in [self.api, *self.others]:
            if p is not None:
                pids.append(p.pid)
                pids += [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
        pids += [p.pid for p in self.workers]
        for pid in pids:
            try:
                yield psutil.Process(pid)
            except psutil.NoSuchProcess:
                continue

    def pool_processes(self) -> list[psutil.Process]:
        """The workers' pool children, which do the classifying."""
        return [c for p in self.workers for c in psutil.Process(p.pid).children(recursive=True)]

    def worker_processes(self) -> Iterator[psutil.Process]:
        """Every running worker main process and its pool children."""
        for p in self.workers:
            try:
                main = psutil.Process(p.pid)
                yield main
                yield from main.children(recursive=True)
            except psutil.NoSuchProcess:
                continue

    def worker_rss_bytes(self) -> int:
        total = 0
        for proc in self.worker_processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far by each part: api, worker consumer
        processes, worker pool children, redis, and this process (the client)."""

        def cpu(proc: psutil.Process) -> float:
            try:
                t = proc.cpu_times()
                return t.user + t.system
            except psutil.NoSuchProcess:
                return 0.0

        out = {"api": 0.0, "worker_consumer": 0.0, "worker_pool": 0.0, "redis": 0.0,
               "client": cpu(psutil.Process())}
        if self.api is not None:
            try:
                api = psutil.Process(self.api.pid)
                out["api"] = cpu(api) + sum(cpu(c) for c in api.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
        for p in self.workers:
            try:
                main = psutil.Process(p.pid)
            except psutil.NoSuchProcess:
                continue
            out["worker_consumer"] += cpu(main)
            out["worker_pool"] += sum(cpu(c) for c in main.children(recursive=True))
        if self.redis_server.proc is not None:
            out["redis"] = cpu(psutil.Process(self.redis_server.proc.pid))
        return out

    def spawn_other(self, name: str, module: str, args: list[str],
                    env: dict[str, str] | None = None) -> subprocess.Popen:
        """Another process (the tutorial design's worker) stopped with the stack."""
        p = self._spawn(name, args, module=module, env=env)
        self.others.append(p)
        return p

    def stop_other(self, proc: subprocess.Popen) -> None:
        stop_all([proc])
        if proc in self.others:
            self.others.remove(proc)

    # -- Redis facts

    def used_memory(self) -> int:
        return int(self.redis.info("memory")["used_memory"])

    def commandstats(self) -> dict[str, int]:
        return {k.removeprefix("cmdstat_"): int(v["calls"])
                for k, v in self.redis.info("commandstats").items()}

    def queue_lengths(self) -> dict[str, int]:
        return {q: int(self.redis.llen(q)) for q in (BULK_QUEUE, PREDICT_QUEUE)}

    def broker_message_sizes(self, queue: str = BULK_QUEUE) -> list[int]:
        """Byte size of every message waiting in a Celery queue (a Redis list)."""
        sizes: list[int] = []
        n = self.redis.llen(queue)
        for start in range(0, n, 1000):
            sizes += [len(m) for m in self.redis.lrange(queue, start, start + 999)]
        return sizes
