"""The whole benchmark in order, on one stack, as one function of a :class:`Config`.

Order (each step leaves the stack ready for the next; worker restarts are few
because each costs a model load):

1. without the stack: in-process limit (1 and ``workers`` processes), CPU per image,
   the model alone from 28x28 arrays;
2. worker-side throughput with 1 process (job stored first, then the worker starts);
3. with no worker: a big job stored through the API (Redis memory per queued
   image, broker messages), plus a ``images`` job behind it; ``workers``
   processes start; ``/predict`` latency while the big job runs; the second job
   gives worker-side throughput with ``workers`` processes; memory per result;
4. ``/predict`` latency at idle;
5. end to end, best of ``e2e_repeats``, each right after an in-process run
   (with Redis command counts and CPU by process);
6. worker RSS over ``memory_images`` images, and the largest worker process;
7. more worker-side (1, ``workers``) pairs, ``scaling_repeats`` in all: best of each;
8. the tutorial design on the same Redis with its own workers;
9. ``redis-benchmark``.

Each step records how much of the machine other processes took meanwhile
(:class:`bench.measure.Contention`), so a noisy run says so.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import measure
from .data import load_images
from .stack import Stack


@dataclass
class Config:
    images: int = 3000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    big_job: int = 10_000
    memory_images: int = 100_000
    predicts: int = 200
    loaded_predicts: int = 2000
    e2e_repeats: int = 3
    scaling_repeats: int = 2
    cpu_images: int = 512
    seed: int = 2024
    chunk_size: int | None = None
    model_path: Path | None = None
    redis_benchmark: bool = True
    command: str = ""

    @classmethod
    def quick(cls, **kw: Any) -> "Config":
        return cls(**{"images": 1000, "big_job": 2000, "memory_images": 10_000, "e2e_repeats": 2,
                      "scaling_repeats": 1,
                      "cpu_images": 256, **kw})


def run(cfg: Config, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)
        ) -> dict[str, Any]:
    """Every measurement; the raw results as a dict (see :mod:`bench.report` for rows)."""
    # The bench's own choices reach every process through the environment,
    # for the duration of the run only.
    env = {}
    if cfg.chunk_size:
        env["INKQ_CHUNK_SIZE"] = str(cfg.chunk_size)
    if cfg.model_path:
        env["INKQ_MODEL_PATH"] = str(Path(cfg.model_path).resolve())
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return _run(cfg, log)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(cfg: Config, log: Callable[[str], None]) -> dict[str, Any]:
    t_start = time.time()
    from inkq.settings import Settings
    from worker.model import load_model

    settings = Settings.from_env()
    chunk = settings.chunk_size
    model_version = load_model(settings.model_path, settings.card_path).version
    r: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(t_start)),
        "command": cfg.command or "python -m bench",
        "machine": measure.machine(),
        "config": {**asdict(cfg), "chunk_size": chunk, "model_version": model_version,
                   "model_path": str(settings.model_path)},
    }
    w = cfg.workers

    contention: dict[str, float | None] = {}
    niced: dict[str, float | None] = {}
    r["contention"], r["contention_niced"] = contention, niced

    @contextmanager
    def phase(name: str, message: str) -> Iterator[None]:
        log(message)
        with measure.Contention() as c:
            yield
        contention[name] = c.share
        niced[name] = c.niced
        if c.share is not None and c.share > 0.1:
            log(f"   note: other processes used {c.share:.0%} of the machine during this step")
        if c.niced is not None and c.niced > 0.1:
            log(f"   note: niced processes used {c.niced:.0%} of the machine during this step")

    log(f"rendering/loading {cfg.images} images")
    im = load_images(cfg.images, seed=cfg.seed)
    r["images"] = {"count": len(im), "png_mean_bytes": im.mean_png_bytes,
                   "data_url_mean_bytes": im.mean_url_bytes, "seed": cfg.seed}

    limit_runs: dict[str, list[dict[str, Any]]] = {}
    for procs in sorted({1, w}):
        with phase(f"inprocess_{procs}", f"1. in-process limit, {procs} process(es)"):
            limit_runs.setdefault(str(procs), []).append(measure.inprocess_limit(im.urls, procs, chunk))
    r["inprocess"] = {k: v[0] for k, v in limit_runs.items()}
    with phase("per_image_cpu", "4. CPU per image"):
        sub = im.take(min(cfg.cpu_images, len(im)))
        r["per_image_cpu"] = measure.per_image_cpu(sub.pngs, sub.urls, chunk)

    with Stack() as stack:
        stack.start_predictor()  # as deployed: `inkq up` and Compose run one
        r["stack"] = {"redis_url": stack.redis_url, "api": stack.url, "run_dir": str(stack.run_dir),
                      "aof": stack.redis_server.appendonly, "predictor": True}
        client = measure.make_client(stack.url)
        try:
            r["client"] = type(client).__module__ + "." + type(client).__name__
            side_runs: dict[str, list[dict[str, Any]]] = {}
            if w != 1:
                with phase("worker_side_1", "6. worker-side throughput, 1 process"):
                    side_runs["1"] = [measure.worker_side(stack, client, im.urls, 1)]

            with phase("redis_queued", f"7. Redis memory of a queued {cfg.big_job}-image job, broker messages"):
                big = im.take(cfg.big_job)
                q = measure.redis_queued_memory(stack, client, big.urls, im.pngs)
                r["redis_queued"] = q
                # Behind the big job: worker-side throughput with w processes.
                second = client.submit(im.urls)
                stack.start_workers(w)

            def big_running() -> bool:
                return measure.job_fields(stack, q["job_id"]).get("status") not in measure.FINISHED

            with phase("predict_loaded", f"5. /predict while the {cfg.big_job}-image job runs"):
                r["predict_loaded"] = measure.predict_latency(client, im.urls, cfg.loaded_predicts,
                                                              while_=big_running)
                r["predict_loaded"]["bulk_images"] = cfg.big_job
            with phase(f"worker_side_{w}", f"6. worker-side throughput, {w} processes"):
                f = measure.wait_job(stack, second["id"], 900)
            secs = float(f["finished_at"]) - float(f["started_at"])
            side_runs[str(w)] = [{"concurrency": w, "images": len(im), "seconds": secs,
                                  "images_per_s": len(im) / secs, "status": f["status"]}]
            r["worker_side"] = {k: v[0] for k, v in side_runs.items()}
            r["redis_results"] = measure.redis_result_memory(
                stack, [q["job_id"], second["id"]], cfg.big_job + len(im), q["used_memory_before"])

            with phase("predict_idle", "5. /predict at idle"):
                r["predict_idle"] = measure.predict_latency(client, im.urls, cfg.predicts)

            # End to end, each run right after an in-process run on the same
            # images: a neighbour on the machine then weighs on both alike.
            runs, pairs = [], []
            for i in range(cfg.e2e_repeats):
                with phase(f"end_to_end_{i + 1}",
                           f"2. end to end, run {i + 1} of {cfg.e2e_repeats} (after an in-process run)"):
                    lim = measure.inprocess_limit(im.urls, w, chunk)
                    e2e = measure.end_to_end(stack, client, im.urls, im.labels)
                runs.append(e2e)
                pairs.append({"inprocess_images_per_s": lim["images_per_s"],
                              "e2e_images_per_s": e2e["images_per_s"],
                              "ratio": e2e["images_per_s"] / lim["images_per_s"],
                              "contention": contention[f"end_to_end_{i + 1}"]})
                limit_runs.setdefault(str(w), []).append(lim)
            r["end_to_end"] = {"best": max(runs, key=lambda x: x["images_per_s"]), "runs": runs,
                               "pairs": pairs}
            r["inprocess"] = {k: {**max(v, key=lambda x: x["images_per_s"]), "runs": len(v)}
                              for k, v in limit_runs.items()}

            with phase("own_core", "2. end to end with the worker on a core of its own"):
                r["own_core"] = measure.own_core(stack, client, im.urls, chunk)
            stack.stop_workers()
            stack.start_workers(w)

            with phase("worker_rss", f"7. worker RSS over {cfg.memory_images} images"):
                r["worker_rss"] = measure.worker_rss(stack, client, im.urls, cfg.memory_images,
                                                     job_size=min(cfg.big_job, settings.max_images_per_job))

            # More (1, w) pairs of worker-side runs: best of each, as for the limit.
            for i in range(1, cfg.scaling_repeats if w != 1 else 1):
                for c in (1, w):
                    with phase(f"worker_side_{c}_{i + 1}", f"6. worker-side throughput, {c} process(es), "
                                                          f"run {i + 1} of {cfg.scaling_repeats}"):
                        side_runs.setdefault(str(c), []).append(measure.worker_side(stack, client, im.urls, c))
            r["worker_side"] = {k: {**max(v, key=lambda x: x["images_per_s"]), "runs": len(v)}
                                for k, v in side_runs.items()}

            with phase("tutorial", "3. the tutorial design"):
                r["tutorial"] = measure.tutorial_design(stack, im.urls, w, im.labels)

            if cfg.redis_benchmark:
                with phase("redis_benchmark", "8. redis-benchmark"):
                    r["redis_benchmark"] = measure.redis_benchmark(stack)
        finally:
            if hasattr(client, "close"):
                client.close()
    r["scaling_model"] = scaling_model(r)
    r["machine"]["loadavg_end"] = os.getloadavg()
    r["seconds"] = time.time() - t_start
    return r


def scaling_model(r: dict[str, Any]) -> dict[str, Any]:
    """Back-of-envelope: how many worker cores one Redis can feed, from this run's numbers."""
    out: dict[str, Any] = {}
    ws = r.get("worker_side", {})
    one = ws.get("1", {}).get("images_per_s")
    many = ws.get(str(r["config"]["workers"]), {}).get("images_per_s")
    per_core = (many / r["config"]["workers"]) if many else one
    out["images_per_s_per_worker_core"] = per_core
    e2e = (r.get("end_to_end") or {}).get("best")
    if e2e:
        out["redis_calls_per_image"] = e2e["redis_calls_per_image"]
        out["redis_net_bytes_per_image"] = (e2e["redis_net_in_bytes_per_image"]
                                            + e2e["redis_net_out_bytes_per_image"])
        cpu_us = e2e.get("redis_cpu_us_per_image")
        if cpu_us:
            # Measured directly: Redis's own CPU time per image, all commands included.
            out["redis_cpu_us_per_image"] = cpu_us
            out["images_per_s_one_redis_core"] = 1e6 / cpu_us
            if per_core:
                out["worker_cores_one_redis_core_feeds"] = 1e6 / cpu_us / per_core
    rb = r.get("redis_benchmark") or {}
    unp = rb.get("unpipelined") or {}
    if unp and e2e and per_core:
        ops = sum(unp.values()) / len(unp)
        images_per_s = ops / e2e["redis_calls_per_image"]
        out["redis_ops_per_s_unpipelined"] = ops
        out["images_per_s_one_redis_can_feed"] = images_per_s
        out["worker_cores_one_redis_can_feed"] = images_per_s / per_core
        out["note"] = ("Counts every command (Lua-internal calls included) at the unpipelined "
                       "rate: a conservative bound; the big commands (RPUSH of images, LRANGE) "
                       "cost more than redis-benchmark's small ones, see net bytes per image.")
    return out
