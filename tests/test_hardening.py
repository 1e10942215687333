"""Smaller guarantees, each against real Redis and real workers: JSON-only Celery,
loud warnings about a Redis that can lose work, unguessable ids, structured logs."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from celery import Celery

from inkq.embedded_redis import EmbeddedRedis
from inkq.jobstore import JobStore, check_redis_config, connect, new_job_id
from inkq.queue import BULK_QUEUE, CLASSIFY_CHUNK
from tests.conftest import data_url, own_service, wait_until


def test_workers_refuse_pickled_messages(live_service, clear_pngs):
    store = JobStore(connect(live_service.redis_url, timeout_s=2), ttl_s=600)
    job = store.create([data_url(clear_pngs[0][0]).encode()])
    rogue = Celery("rogue", broker=live_service.redis_url)
    rogue.conf.update(task_serializer="pickle", accept_content=["pickle"])
    rogue.send_task(CLASSIFY_CHUNK, args=[job["id"], 0, 1], queue=BULK_QUEUE, serializer="pickle")
    wait_until(lambda: "disallowed" in live_service.logs("worker0", tail=100_000).lower(), 20,
               "the worker to refuse the pickled message")
    time.sleep(0.5)
    assert store.get(job["id"])["done"] == 0  # never executed


def test_redis_that_can_lose_work_is_reported_loudly(tmp_path, caplog):
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        client = connect(server.url, timeout_s=2)
        client.config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING):
            warnings = check_redis_config(client, logging.getLogger("t"))
        assert any("noeviction" in w for w in warnings)
        assert any("append-only" in w for w in warnings)
        assert "DROP" in caplog.text
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("appendonly", "yes")
        assert check_redis_config(client, logging.getLogger("t")) == []
    finally:
        server.stop()


def test_worker_and_api_warn_at_start_up(tmp_path):
    evicting = lambda r: r.config_set("maxmemory-policy", "volatile-lru")  # noqa: E731
    with own_service(tmp_path, before_start=evicting) as service:
        for name in ("api", "worker0"):
            assert "maxmemory-policy is 'volatile-lru'" in service.logs(name, tail=100_000), name


def test_job_ids_are_unguessable():
    ids = {new_job_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    # 128 random bits each, in characters that no shell or option parser treats specially
    assert all(len(i) == 26 and set(i) <= set("abcdefghijklmnopqrstuvwxyz234567") for i in ids)
    assert len({i[0] for i in ids}) == 32  # the first character is as random as the rest


@pytest.fixture()
def json_logged(tmp_path):
    env = {"INKQ_LOG_FORMAT": "json", "INKQ_LOG_LEVEL": "DEBUG", "INKQ_REQUIRE_API_KEY": "true"}
    with own_service(tmp_path, env) as service:
        yield service


def test_json_logs_carry_ids_and_no_secrets(json_logged, canvas_pngs):
    from inkq.apikeys import KeyRing

    key = KeyRing(json_logged.redis).add("logger")
    images = [data_url(png) for png, _ in canvas_pngs[:70]]
    headers = {"Authorization": f"Bearer {key}"}
    job = httpx.post(f"{json_logged.url}/v1/jobs", json={"images": images}, headers=headers).json()
    wait_until(lambda: httpx.get(f"{json_logged.url}/v1/jobs/{job['id']}", headers=headers).json()["status"]
               == "succeeded", 60, "the job")
    records = []
    for name in ("api", "worker0"):
        text = json_logged.logs(name, tail=10_000_000)
        assert key not in text, f"the API key leaked into the {name} log"
        assert all(img[30:90] not in text for img in images[:5]), f"image data in the {name} log"
        records += [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("job_id") == job["id"]]
    chunks = {r["chunk"] for r in mine if "chunk" in r}
    assert chunks == {"0-32", "32-64", "64-70"}
    assert any(r["logger"].startswith("api") for r in mine)
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)


def test_clients_that_stall_do_not_keep_others_out(live_service, clear_pngs):
    """Three times as many half-sent requests as the API has threads: some stop
    in their headers, some in their body, and all keep their side open. Each is
    dropped after INKQ_CLIENT_TIMEOUT_S (a body cut short is a 400), and
    /predict is answered soon after; without the timeout every thread would
    wait on them for good, and without closing off the main thread the
    worker would stop accepting for 2 s per dropped client."""
    import socket
    from urllib.parse import urlsplit

    from tests.conftest import extra_api

    png, char = clear_pngs[0]
    env = {"INKQ_CLIENT_TIMEOUT_S": "1", "INKQ_API_THREADS": "4"}
    with extra_api(live_service, "api-stalls", env) as url:
        u = urlsplit(url)
        head = b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        stalls = []
        for i in range(12):
            sock = socket.create_connection((u.hostname, u.port), timeout=30)
            sock.sendall(head if i % 2 else head + b"Content-Length: 100000\r\n\r\n{\"images\": [\"")
            stalls.append(sock)
        try:
            t0 = time.monotonic()
            with httpx.Client(base_url=url, timeout=60) as client:
                resp = client.post("/predict", json={"image": data_url(png)})
            waited = time.monotonic() - t0
            answer = b""  # from one that stalled in its body
            while b"bad_request" not in answer and (chunk := stalls[0].recv(65536)):
                answer += chunk
        finally:
            for sock in stalls:
                sock.close()
    assert resp.status_code == 200 and resp.json()["prediction"] == char
    assert waited < 15, waited  # three rounds of 1 s, plus /predict itself
    assert answer.startswith(b"HTTP/1.1 400") and b"bad_request" in answer, answer[:300]
    log = live_service.logs("api-stalls", tail=100_000)
    assert "dropped a client that sent nothing for 1.0 s" in log
    assert "Socket error processing request" not in log
