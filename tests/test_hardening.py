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
