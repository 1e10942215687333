"""Nothing lost, nothing counted twice: killed workers, restarted and stalled Redis.

Each test runs its own stack (a Redis with AOF, real worker processes, the
API) so it can kill parts of it, with a short visibility timeout so a chunk
held by a dead worker comes back within seconds.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil
import pytest

from inkq import keys
from inkq.embedded_redis import EmbeddedRedis
from tests.conftest import data_url, own_service, start_process, wait_until

VISIBILITY_S = 4
ENV = {"INKQ_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S), "INKQ_CHUNK_SIZE": "16",
       "INKQ_WORKER_CONCURRENCY": "2"}
FINISHED = {"succeeded", "partially_succeeded", "failed", "cancelled"}


@pytest.fixture()
def stack(tmp_path):
    with own_service(tmp_path, ENV) as service:
        yield service


@pytest.fixture(scope="module")
def big_job(canvas_pngs) -> list[str]:
    # 3,600 images, 225 chunks: a second or more of work, so kills land mid-job.
    return [data_url(png) for png, _ in canvas_pngs] * 15


def submit(url: str, images: list[str]) -> str:
    resp = httpx.post(f"{url}/v1/jobs", json={"images": images}, timeout=60)
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def job(url: str, job_id: str) -> dict:
    return httpx.get(f"{url}/v1/jobs/{job_id}", timeout=5).json()


def wait_progress(url: str, job_id: str, at_least: int = 1) -> dict:
    return wait_until(lambda: (d := job(url, job_id))["done"] >= at_least and d, 60, "progress", 0.02)


def wait_finished(url: str, job_id: str, timeout_s: float = 90) -> dict:
    def finished():
        try:
            d = job(url, job_id)
        except httpx.HTTPError:
            return None
        return d if d.get("status") in FINISHED else None

    return wait_until(finished, timeout_s, f"job {job_id} to finish", 0.2)


def assert_exactly_once(service, job_id: str, total: int) -> None:
    doc = job(service.url, job_id)
    assert doc["status"] in ("succeeded", "partially_succeeded"), doc
    assert doc["done"] == total, doc
    stored = service.redis.hlen(keys.results(job_id))
    assert stored == total
    items = []
    url = f"/v1/jobs/{job_id}/results"
    while url:
        page = httpx.get(service.url + url, timeout=10).json()
        items += page["items"]
        url = page["next"]
    assert [it["index"] for it in items] == list(range(total))
    assert doc["failed"] == sum("error" in it for it in items)


def worker_family(service, name: str = "worker0") -> tuple[psutil.Process, list[psutil.Process]]:
    main = psutil.Process(service.procs[name].pid)
    return main, main.children(recursive=True)


def test_killed_pool_child_loses_nothing(stack, big_job):
    images = big_job
    job_id = submit(stack.url, images)
    wait_progress(stack.url, job_id)
    _, children = worker_family(stack)
    assert children, "the worker has no pool processes"
    for child in children:  # every pool process: at least one is cut off mid-chunk
        os.kill(child.pid, signal.SIGKILL)
    assert job(stack.url, job_id)["done"] < len(images), "the job finished before the kill"
    wait_finished(stack.url, job_id)
    assert_exactly_once(stack, job_id, len(images))
    wait_until(lambda: "signal 9" in stack.logs("worker0", tail=500_000), 10,
               "the worker to report its lost pool process")


def test_killed_worker_loses_nothing(stack, big_job):
    job_id = submit(stack.url, big_job)
    wait_progress(stack.url, job_id)
    os.killpg(stack.procs["worker0"].pid, signal.SIGKILL)  # the worker and its whole pool
    stack.procs["worker0"].wait(10)
    before = job(stack.url, job_id)
    assert before["done"] < before["total"], "the job finished before the kill; make it bigger"
    stack.procs["worker1"] = start_process("worker1", ["worker"], stack.env, stack.log_dir)
    wait_finished(stack.url, job_id, timeout_s=VISIBILITY_S + 90)
    assert_exactly_once(stack, job_id, len(big_job))


def test_a_sweep_lock_left_by_a_dead_worker_holds_nothing_up(stack, big_job):
    """Workers sweep for chunks of dead workers under a lock in Redis. A worker
    killed while it holds that lock leaves it to expire: after seconds, not
    after kombu's default of 300."""
    from inkq.queue import UNACKED_MUTEX_EXPIRE_S, make_celery
    from inkq.settings import Settings

    app = make_celery(Settings.from_env({}, redis_url=stack.redis_url, visibility_timeout_s=VISIBILITY_S))
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        key, expire = channel.unacked_mutex_key, channel.unacked_mutex_expire
    assert expire == UNACKED_MUTEX_EXPIRE_S
    job_id = submit(stack.url, big_job)
    wait_progress(stack.url, job_id)
    # The lock as a worker killed mid-sweep leaves it: taken the way kombu
    # takes it, never released.
    assert stack.redis.lock(key, timeout=expire).acquire(blocking=False)
    os.killpg(stack.procs["worker0"].pid, signal.SIGKILL)
    stack.procs["worker0"].wait(10)
    assert job(stack.url, job_id)["done"] < len(big_job), "the job finished before the kill"
    stack.procs["worker1"] = start_process("worker1", ["worker"], stack.env, stack.log_dir)
    wait_finished(stack.url, job_id, timeout_s=VISIBILITY_S + expire + 40)
    assert_exactly_once(stack, job_id, len(big_job))


def test_a_chunk_the_broker_lost_is_queued_again(stack, big_job):
    """kombu pops a message before it records it as unacknowledged, so a worker
    killed between the two loses a chunk outright (the broker has no copy left).
    Here one chunk's message is taken off the queue the same way: the job still
    finishes, every item recorded once, after the workers find the hole."""
    from inkq.queue import BULK_QUEUE, lost_after_s
    from inkq.settings import Settings

    job_id = submit(stack.url, big_job)
    lost = stack.redis.lpop(BULK_QUEUE)  # the newest message: its chunk has not started
    assert lost is not None, "the queue was empty: make the job bigger"
    settings = Settings.from_env({k: v for k, v in stack.env.items() if k.startswith("INKQ_")})
    wait_finished(stack.url, job_id, timeout_s=lost_after_s(settings) + 60)
    assert_exactly_once(stack, job_id, len(big_job))
    assert "queued again" in stack.logs("worker0", tail=500_000)


def test_redis_restart_loses_nothing(stack, big_job):
    job_id = submit(stack.url, big_job)
    wait_progress(stack.url, job_id)
    before = job(stack.url, job_id)
    port, data_dir = stack.server.port, stack.server.data_dir
    stack.server.stop()
    assert before["done"] < len(big_job), "the job finished before the restart"
    time.sleep(1.0)
    stack.server = EmbeddedRedis(data_dir, port=port).start()
    wait_finished(stack.url, job_id, timeout_s=VISIBILITY_S + 90)
    assert_exactly_once(stack, job_id, len(big_job))


def answer_time(url: str) -> tuple[int, float]:
    start = time.monotonic()
    resp = httpx.get(url, timeout=5)
    elapsed = time.monotonic() - start
    assert resp.headers["Content-Type"].startswith("application/json")
    return resp.status_code, elapsed


@pytest.mark.parametrize("outage", ["stopped", "frozen"])
def test_redis_outage_is_503_fast_and_recovers(stack, canvas_pngs, outage):
    first = submit(stack.url, [data_url(canvas_pngs[0][0])])
    wait_finished(stack.url, first)
    port, data_dir = stack.server.port, stack.server.data_dir
    if outage == "stopped":
        stack.server.stop()
    else:
        os.kill(stack.server.proc.pid, signal.SIGSTOP)
    try:
        for path in (f"/v1/jobs/{first}", "/readyz"):
            for _ in range(3):
                status, elapsed = answer_time(stack.url + path)
                assert status == 503 and elapsed < 1.0, (path, status, elapsed)
        resp = httpx.post(f"{stack.url}/v1/jobs", json={"images": ["AAAA"]}, timeout=5)
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "store_unavailable"
    finally:
        if outage == "stopped":
            stack.server = EmbeddedRedis(data_dir, port=port).start()
        else:
            os.kill(stack.server.proc.pid, signal.SIGCONT)
    # Both recover on their own; workers reconnect without a restart.
    wait_until(lambda: answer_time(stack.url + "/readyz")[0] == 200, 30, "readyz to recover")
    again = submit(stack.url, [data_url(png) for png, _ in canvas_pngs[:40]])
    wait_finished(stack.url, again, timeout_s=60)
    assert job(stack.url, again)["done"] == 40
    assert all(p.poll() is None for p in stack.procs.values())


def test_pool_processes_are_recycled(tmp_path, canvas_pngs):
    """Pool processes are replaced after N tasks, losing nothing.

    (The RSS ceiling, INKQ_WORKER_MAX_MEMORY_MB, is Celery's same mechanism keyed on
    memory; set below a fresh process's size it recycles after every task and
    Celery can strand a chunk until shutdown, celery/celery#4809, so it is a
    backstop set well above the model's footprint, not something to test at 1 MB.)
    """
    with own_service(tmp_path, {**ENV, "INKQ_WORKER_CONCURRENCY": "1",
                                "INKQ_WORKER_MAX_TASKS_PER_CHILD": "2"}) as service:
        images = [data_url(png) for png, _ in canvas_pngs[:160]]  # 10 chunks of 16
        main = psutil.Process(service.procs["worker0"].pid)
        seen = {c.pid for c in main.children()}
        job_id = submit(service.url, images)
        deadline = time.monotonic() + 90
        while job(service.url, job_id)["status"] not in FINISHED and time.monotonic() < deadline:
            seen |= {c.pid for c in main.children()}
            time.sleep(0.01)
        assert_exactly_once(service, job_id, len(images))
        assert len(seen) >= 3, f"pool processes seen: {seen}"


#: What a queue can hold when something other than kombu writes to it.
FOREIGN = [b"not json", b"\xff\xfe\x00", b"42", b'{"body": "x"}',
           b'{"body": "@@@", "properties": {"delivery_tag": "t", "body_encoding": "base64"}}']


def test_a_message_that_is_not_kombus_is_dropped_and_the_workers_go_on(stack, canvas_pngs):
    """kombu decodes a message's envelope before Celery could reject it, so one
    that is not kombu's JSON used to stop the worker that popped it."""
    from inkq.queue import BULK_QUEUE, PREDICT_QUEUE

    main, _ = worker_family(stack)
    # BRPOP takes from the right: these are read before anything queued after them.
    stack.redis.rpush(BULK_QUEUE, *FOREIGN)
    stack.redis.rpush(PREDICT_QUEUE, *FOREIGN)
    images = [data_url(png) for png, _ in canvas_pngs[:48]]
    job_id = submit(stack.url, images)
    wait_finished(stack.url, job_id)
    assert_exactly_once(stack, job_id, len(images))
    resp = httpx.post(f"{stack.url}/predict", json={"image": images[0]}, timeout=30)
    assert resp.status_code == 200, resp.text
    wait_until(lambda: stack.redis.llen(BULK_QUEUE) == 0 and stack.redis.llen(PREDICT_QUEUE) == 0, 10,
               "the queues to empty")
    logs = "".join(stack.logs(name, tail=500_000) for name in stack.procs if name.startswith("worker"))
    assert logs.count("dropped a message that is not a kombu message") == 2 * len(FOREIGN), logs[-3000:]
    assert main.is_running() and stack.procs["worker0"].poll() is None
