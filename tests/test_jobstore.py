"""The job store's atomic steps, against a real Redis."""

from __future__ import annotations

import pytest

from inkq import keys
from inkq.jobstore import JobStore, connect, decode_item, encode_item

OK = {"prediction": "A", "confidence": 0.9, "top5": [{"label": c, "prob": p} for c, p in
      zip("AHRNM", (0.9, 0.05, 0.03, 0.01, 0.01))]}
BAD = {"error": {"code": "invalid_image", "message": "no"}}


@pytest.fixture()
def store(redis_server):
    return JobStore(connect(redis_server.url, timeout_s=2), ttl_s=3600)


def test_items_round_trip_compactly():
    assert decode_item(3, encode_item(OK)) == {"index": 3, **OK}
    assert decode_item(4, encode_item(BAD)) == {"index": 4, **BAD}
    assert len(encode_item(OK)) < 80


def test_a_redelivered_chunk_counts_once(store):
    job = store.create([b"a", b"b", b"c", b"d"])
    claim = store.claim(job["id"], 0, 2, model_version="m1")
    assert claim.status == "running" and claim.images == [b"a", b"b"]
    assert store.record(job["id"], 0, [OK, BAD]).added == 2
    assert store.record(job["id"], 0, [OK, BAD]).added == 0  # second delivery: no-op
    doc = store.get(job["id"])
    assert (doc["status"], doc["done"], doc["failed"], doc["model_version"]) == ("running", 2, 1, "m1")
    recorded = store.record(job["id"], 2, [OK, OK])
    assert (recorded.added, recorded.status) == (2, "partially_succeeded")
    doc = store.get(job["id"])
    assert (doc["status"], doc["done"], doc["failed"]) == ("partially_succeeded", 4, 1)
    assert doc["finished_at"] is not None
    assert not store.redis.exists(keys.images(job["id"]))  # images freed once finished


def test_final_status_reflects_failures(store):
    ok = store.create([b"a"])
    store.record(ok["id"], 0, [OK])
    assert store.get(ok["id"])["status"] == "succeeded"
    bad = store.create([b"a"])
    store.record(bad["id"], 0, [BAD])
    assert store.get(bad["id"])["status"] == "failed"


def test_every_key_expires(store):
    job = store.create([b"a", b"b"], rejected={1: BAD["error"]})
    store.claim(job["id"], 0, 1, model_version="m")
    store.record(job["id"], 0, [OK])
    for key in (keys.job(job["id"]), keys.results(job["id"])):
        assert 0 < store.redis.ttl(key) <= 3600


def test_cancel_stops_claims_and_frees_images(store):
    job = store.create([b"a", b"b"])
    assert store.cancel(job["id"]) == "cancelled"
    assert store.claim(job["id"], 0, 2, model_version="m").status == "cancelled"
    assert not store.redis.exists(keys.images(job["id"]))
    assert store.cancel(job["id"]) == "cancelled"
    assert store.cancel("unknown") is None


def test_owner_scopes_visibility(store):
    job = store.create([b"a"], owner="alice")
    assert store.get(job["id"], owner="alice") is not None
    assert store.get(job["id"], owner="bob") is None


def test_idempotency_key_binds_once(store):
    assert store.remember_idempotency("", "k1", "job-1") is None
    assert store.remember_idempotency("", "k1", "job-2") == "job-1"
    assert store.remember_idempotency("other", "k1", "job-3") is None


def test_lost_chunks_are_found_and_queued_again(redis_server):
    """A chunk the broker lost leaves its items without results: a job that made
    no progress for longer than a lost chunk takes to come back has them queued
    again, once per heartbeat and only while no chunk waits in the bulk queue."""
    from inkq.settings import Settings
    from worker.tasks import BULK_QUEUE, requeue_lost

    # This Redis also serves the suite's live workers, whose heartbeats look for
    # lost chunks in database 0 (and would take the lock, or the job, from under
    # this test): it works in a database of its own.
    store = JobStore(connect(redis_server.url.rsplit("/", 1)[0] + "/1", timeout_s=2), ttl_s=3600)
    store.redis.flushdb()
    job = store.create([b"x"] * 40, rejected={3: BAD["error"]})["id"]
    store.claim(job, 0, 16, model_version="m")
    store.record(job, 0, [OK] * 16)
    store.record(job, 32, [OK] * 8)
    assert store.missing(job, 16) == [(16, 32)]
    assert store.missing(job, 10) == [(16, 26), (26, 32)]
    assert store.stalled(3600) == [] and store.stalled(0) == [job]

    settings = Settings.from_env({}, visibility_timeout_s=4, heartbeat_s=60, chunk_size=16)
    queued: list[tuple[str, int, int]] = []
    assert requeue_lost(store, settings, lambda *a: queued.append(a)) == 0  # progress is recent
    assert requeue_lost(store, settings, lambda *a: queued.append(a)) == 0  # and one look per heartbeat
    store.redis.delete(keys.requeue_lock())
    store.redis.zadd(keys.active(), {job: 1.0})  # as if nothing happened since 1970
    store.redis.rpush(BULK_QUEUE, b"a chunk waiting its turn")
    assert requeue_lost(store, settings, lambda *a: queued.append(a)) == 0
    store.redis.delete(BULK_QUEUE)
    assert requeue_lost(store, settings, lambda *a: queued.append(a)) == 1
    assert queued == [(job, 16, 32)]
    assert store.stalled(60) == []  # looked at just now: not again before it is due
    store.redis.delete(keys.requeue_lock())
    # The job ends: it leaves the index, and nothing more is queued for it.
    store.record(job, 16, [OK] * 16)
    assert store.get(job)["status"] == "partially_succeeded"
    assert store.stalled(0) == []
    assert requeue_lost(store, settings, lambda *a: queued.append(a)) == 0
    cancelled = store.create([b"x"] * 4)["id"]
    store.cancel(cancelled)
    assert store.stalled(0) == [] and store.missing(cancelled, 16) == []
