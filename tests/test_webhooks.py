"""Completion webhooks: signed, retried with backoff, delivered once, only to allowed hosts."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from inkq.errors import ValidationFailed
from inkq.webhooks import SIGNATURE_HEADER, host_allowed, sign, validate_callback_url, verify
from tests.conftest import data_url, own_service, wait_until

SECRET = "test-webhook-secret"


class Receiver:
    """A webhook receiver on loopback that fails its first ``failures`` deliveries."""

    def __init__(self, failures: int = 0):
        self.failures = failures
        self.requests: list[tuple[dict, bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = 500 if len(receiver.requests) < receiver.failures else 200
                receiver.requests.append((dict(self.headers), body, status))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()


@pytest.fixture(scope="module")
def hooked(tmp_path_factory):
    """A service with webhooks on, on its own Redis: its notifier is the only one."""
    env = {"INKQ_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,*.example.org", "INKQ_WEBHOOK_SECRET": SECRET}
    with own_service(tmp_path_factory.mktemp("hooks"), env) as service:
        yield service


def test_receiver_that_fails_twice_gets_one_signed_delivery(hooked, clear_pngs):
    receiver = Receiver(failures=2)
    try:
        images = [data_url(png) for png, _ in clear_pngs]
        resp = httpx.post(f"{hooked.url}/v1/jobs", json={"images": images, "callback_url": receiver.url})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        wait_until(lambda: any(s == 200 for *_, s in receiver.requests), 60, "a successful delivery")
        time.sleep(3)  # nothing more may arrive
        assert [s for *_, s in receiver.requests] == [500, 500, 200]
        headers, body, _ = receiver.requests[-1]
        assert verify(SECRET, headers[SIGNATURE_HEADER], body)
        assert not verify("another-secret", headers[SIGNATURE_HEADER], body)
        doc = json.loads(body)
        assert doc["id"] == job_id and doc["status"] == "succeeded" and doc["done"] == len(images)
        assert doc == httpx.get(f"{hooked.url}/v1/jobs/{job_id}").json()
        assert headers["Inkq-Event"] == "job.finished"
    finally:
        receiver.close()


def test_cancelled_job_is_reported(hooked, canvas_pngs):
    receiver = Receiver()
    try:
        images = [data_url(png) for png, _ in canvas_pngs] * 4
        job = httpx.post(f"{hooked.url}/v1/jobs", json={"images": images, "callback_url": receiver.url}).json()
        httpx.delete(f"{hooked.url}/v1/jobs/{job['id']}")
        wait_until(lambda: receiver.requests, 30, "a delivery")
        time.sleep(2)
        assert len(receiver.requests) == 1
        assert json.loads(receiver.requests[0][1])["status"] == "cancelled"
    finally:
        receiver.close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data", "http://localhost:6379/", "ftp://127.0.0.1/x",
    "http://user:pw@127.0.0.1/x", "not a url", 42,
])
def test_disallowed_callbacks_are_400(hooked, url):
    resp = httpx.post(f"{hooked.url}/v1/jobs", json={"images": ["AAAA"], "callback_url": url})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "validation_failed"


def test_callbacks_refused_when_not_configured(live_service):
    resp = httpx.post(f"{live_service.url}/v1/jobs",
                      json={"images": ["AAAA"], "callback_url": "http://127.0.0.1:9/x"})
    assert resp.status_code == 400


def test_signatures_and_allow_list():
    body = b'{"id": "x"}'
    header = sign(SECRET, body, timestamp=1_000_000)
    assert verify(SECRET, header, body, now=1_000_010)
    assert not verify(SECRET, header, body + b" ", now=1_000_010)
    assert not verify(SECRET, header, body, now=1_000_000 + 3600)  # replayed later
    assert not verify(SECRET, "garbage", body)
    assert host_allowed("hooks.example.org", ["*.example.org"])
    assert not host_allowed("example.org.evil.com", ["*.example.org"])
    assert not host_allowed("10.0.0.1", [])
    with pytest.raises(ValidationFailed):
        validate_callback_url("http://10.0.0.1/", ["127.0.0.1"])


def test_a_redelivered_last_chunk_queues_the_lost_webhook(hooked, clear_pngs):
    """The worker that finished a job died before queueing its webhook: the chunk's
    redelivery (which finds the job finished) queues it."""
    from inkq.jobstore import JobStore, connect
    from worker import runtime
    from worker.celery_app import app
    from worker.tasks import run_chunk

    receiver = Receiver()
    app.conf.broker_url = hooked.redis_url  # this process publishes the webhook task
    try:
        store = JobStore(connect(hooked.redis_url, timeout_s=5), ttl_s=600)
        job = store.create([data_url(clear_pngs[0][0])], callback_url=receiver.url)
        claim = store.claim(job["id"], 0, 1, model_version="m")
        assert store.record(job["id"], 0, [{"error": {"code": "invalid_image", "message": "x"}}]).finished_job
        # ... and the worker died here. The broker redelivers the chunk:
        settings = runtime.settings().replace(redis_url=hooked.redis_url)
        assert claim.status == "running"
        assert run_chunk(job["id"], 0, 1, store=store, model=runtime.model(), settings=settings) == 0
        wait_until(lambda: receiver.requests, 30, "the webhook")
        assert json.loads(receiver.requests[0][1])["status"] == "failed"
    finally:
        receiver.close()
