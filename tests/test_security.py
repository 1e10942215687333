"""API keys, ownership, idempotency scoping and rate limits, on real Redis and workers."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from inkq.apikeys import KeyRing
from tests.conftest import ROOT, data_url, extra_api


@pytest.fixture(scope="module")
def secured(live_service, tmp_path_factory):
    """A second API process with keys required, on the same Redis and workers."""
    with extra_api(live_service, "api-secured",
                   {"INKQ_REQUIRE_API_KEY": "true", "INKQ_RATE_LIMIT_PER_MIN": "30"}) as url:
        yield url


def cli(live_service, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inkq.cli", "keys", *args], cwd=ROOT,
                          env={"REDIS_URL": live_service.redis_url, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


def test_keys_are_required_scoped_and_revocable(live_service, secured, clear_pngs):
    alice = cli(live_service, "add", "alice").stdout.strip()
    bob = cli(live_service, "add", "bob").stdout.strip()
    assert alice.startswith("inkq_") and bob != alice
    # Only digests are stored: the key itself appears nowhere in Redis.
    dump = b" ".join(k + b" " + b" ".join(live_service.redis.hvals(k))
                     for k in live_service.redis.keys(b"inkq:apikeys"))
    assert alice.encode() not in dump
    listed = cli(live_service, "list").stdout
    assert "alice" in listed and "bob" in listed and alice not in listed

    body = {"images": [data_url(clear_pngs[0][0])]}
    assert httpx.post(f"{secured}/v1/jobs", json=body).status_code == 401
    assert httpx.post(f"{secured}/v1/jobs", json=body,
                      headers={"Authorization": "Bearer inkq_wrong"}).status_code == 401
    resp = httpx.post(f"{secured}/v1/jobs", json=body, headers={"Authorization": f"Bearer {alice}"})
    assert resp.status_code == 202
    job = resp.json()["id"]
    assert httpx.get(f"{secured}/v1/jobs/{job}", headers={"X-API-Key": alice}).status_code == 200
    # Another key cannot see it, nor cancel it, nor read its results.
    for method, path in (("GET", ""), ("GET", "/results"), ("DELETE", "")):
        r = httpx.request(method, f"{secured}/v1/jobs/{job}{path}", headers={"X-API-Key": bob})
        assert r.status_code == 404, (method, path)

    # Idempotency keys are per API key: the same token from bob makes bob's own job.
    h = {"Idempotency-Key": "same-token"}
    a1 = httpx.post(f"{secured}/v1/jobs", json=body, headers={**h, "X-API-Key": alice}).json()["id"]
    a2 = httpx.post(f"{secured}/v1/jobs", json=body, headers={**h, "X-API-Key": alice}).json()["id"]
    b1 = httpx.post(f"{secured}/v1/jobs", json=body, headers={**h, "X-API-Key": bob}).json()["id"]
    assert a1 == a2 != b1

    assert cli(live_service, "revoke", "alice").returncode == 0
    assert httpx.get(f"{secured}/v1/jobs/{job}", headers={"X-API-Key": alice}).status_code == 401
    assert cli(live_service, "revoke", "alice").returncode != 0
    # Probes stay open.
    assert httpx.get(f"{secured}/healthz").status_code == 200


def test_rate_limit_answers_429_with_retry_after(live_service, secured):
    carol = cli(live_service, "add", "carol").stdout.strip()
    if time.time() % 60 > 50:  # stay inside one one-minute window
        time.sleep(61 - time.time() % 60)
    codes = []
    for _ in range(40):
        r = httpx.get(f"{secured}/v1/jobs/none", headers={"X-API-Key": carol})
        codes.append(r.status_code)
        if r.status_code == 429:
            assert 1 <= int(r.headers["Retry-After"]) <= 61
            assert r.json()["error"]["code"] == "rate_limited"
    assert codes.count(404) == 30 and codes.count(429) == 10


def test_idempotent_submit_returns_the_same_job(live_service, clear_pngs):
    body = {"images": [data_url(png) for png, _ in clear_pngs]}
    with live_service.client() as client:
        first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-me"})
        again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "retry-me"})
        other = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "another"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]


def test_keyring_unit(redis_server):
    import redis as redis_py

    ring = KeyRing(redis_py.Redis.from_url(redis_server.url))
    key = ring.add("unit-key")
    assert ring.check(key).name == "unit-key"
    assert ring.check(key + "x") is None
    with pytest.raises(ValueError):
        ring.add("unit-key")
    assert ring.revoke("unit-key") and ring.check(key) is None
