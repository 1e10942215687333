"""Tests of :mod:`inkq.client`.

Two kinds: retry behaviour against a tiny scripted HTTP server on 127.0.0.1
(the only way to make a real service answer 503 then 200 on demand), and the
client's calls against the real service (``live_service`` from conftest).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from inkq import errors
from inkq.client import (
    IMAGE_SUFFIXES,
    Client,
    backoff_delay,
    encode_image,
    encoded_size,
    find_images,
    parse_retry_after,
    plan_batches,
)

# --------------------------------------------------------------------------- a scripted server


class Script:
    """Canned answers, served in order (the last one repeats), and a log of requests."""

    def __init__(self, answers: list[tuple[int, dict[str, str], Any]]):
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def next(self) -> tuple[int, dict[str, str], Any]:
        return self.answers[min(len(self.requests) - 1, len(self.answers) - 1)]


@pytest.fixture
def scripted() -> Iterator[Any]:
    """Start a local HTTP server answering from a script; yields ``serve(answers) -> (url, script)``."""
    servers: list[ThreadingHTTPServer] = []

    def serve(answers: list[tuple[int, dict[str, str], Any]]) -> tuple[str, Script]:
        script = Script(answers)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                script.requests.append(
                    {"t": time.monotonic(), "method": self.command, "path": self.path,
                     "headers": dict(self.headers), "body": body}
                )
                status, headers, payload = script.next()
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", script

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


LIMITS = {"max_images_per_job": 1000, "max_request_bytes": 10_000_000, "max_image_bytes": 1_000_000,
          "max_image_pixels": 4_000_000, "formats": ["png"]}
JOB = {"id": "j1", "status": "queued", "total": 1, "done": 0, "failed": 0, "succeeded": 0}


def _err(code: str, message: str = "nope") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# --------------------------------------------------------------------------- retries


def test_503_with_retry_after_is_retried_after_the_delay(scripted):
    url, script = scripted([(503, {"Retry-After": "1"}, _err("no_workers")), (200, {}, LIMITS)])
    with Client(url, retries=3) as client:
        assert client.limits() == LIMITS
    assert len(script.requests) == 2
    gap = script.requests[1]["t"] - script.requests[0]["t"]
    assert 1.0 <= gap < 2.0, f"retried after {gap:.2f} s, Retry-After said 1 s"


def test_429_on_submit_is_retried_with_the_same_idempotency_key(scripted):
    url, script = scripted([(429, {"Retry-After": "1"}, _err("rate_limited")), (202, {"Location": "/v1/jobs/j1"}, JOB)])
    with Client(url, retries=2) as client:
        job = client.submit([b"\x89PNG fake"])
    assert job["id"] == "j1"
    first, second = script.requests
    assert second["t"] - first["t"] >= 1.0
    key = first["headers"].get("Idempotency-Key")
    assert key and key == second["headers"].get("Idempotency-Key")
    assert first["body"] == second["body"]


def test_429_after_all_retries_raises_rate_limited_with_retry_after(scripted):
    url, script = scripted([(429, {"Retry-After": "0"}, _err("rate_limited", "slow down"))])
    with Client(url, retries=2) as client, pytest.raises(errors.RateLimited) as info:
        client.job("j1")
    assert len(script.requests) == 3
    assert info.value.code == "rate_limited" and info.value.status_code == 429
    assert info.value.retry_after_s == 0


def test_retry_after_beyond_the_cap_raises_at_once(scripted):
    url, script = scripted([(503, {"Retry-After": "3600"}, _err("service_unavailable"))])
    with Client(url, retries=5) as client, pytest.raises(errors.ServiceUnavailable):
        client.limits()
    assert len(script.requests) == 1


def test_503_without_retry_after_backs_off_exponentially(scripted):
    url, _ = scripted([(503, {}, _err("store_unavailable"))] * 3 + [(200, {}, LIMITS)])
    slept: list[float] = []
    with Client(url, retries=3, sleep=slept.append) as client:
        assert client.limits() == LIMITS
    assert len(slept) == 3
    for attempt, delay in enumerate(slept):
        ceiling = min(8.0, 0.25 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


def test_other_errors_are_not_retried_and_keep_their_code(scripted):
    url, script = scripted([(404, {}, _err("job_not_found", "No such job"))])
    with Client(url) as client, pytest.raises(errors.JobNotFound) as info:
        client.job("nope")
    assert len(script.requests) == 1
    assert (info.value.code, info.value.status_code, info.value.message) == ("job_not_found", 404, "No such job")


def test_non_json_error_still_maps_to_the_right_type(scripted):
    url, _ = scripted([(502, {"Content-Type": "text/html"}, b"<html>Bad gateway</html>")])
    with Client(url, retries=0) as client, pytest.raises(errors.ServiceUnavailable) as info:
        client.limits()
    assert "502" in info.value.message
    assert f"not an answer of the inkq API; is {url}/v1/limits right?" in info.value.message


def test_connection_refused_raises_service_unavailable_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    slept: list[float] = []
    with (
        Client(f"http://127.0.0.1:{port}", retries=2, sleep=slept.append) as client,
        pytest.raises(errors.ServiceUnavailable) as info,
    ):
        client.limits()
    assert len(slept) == 2
    assert info.value.code == "service_unavailable" and f"127.0.0.1:{port}" in info.value.message


def test_api_key_is_sent_as_bearer(scripted):
    url, script = scripted([(200, {}, LIMITS)])
    with Client(url, api_key="s3cret") as client:
        client.limits()
    assert script.requests[0]["headers"]["Authorization"] == "Bearer s3cret"


def test_results_follow_next_across_pages(scripted):
    pages = [
        (200, {}, {"items": [{"index": 0}, {"index": 1}], "next": "/v1/jobs/j1/results?offset=2&limit=2"}),
        (200, {}, {"items": [{"index": 2}], "next": None}),
    ]
    url, script = scripted(pages)
    with Client(url) as client:
        assert [item["index"] for item in client.results("j1", page_size=2)] == [0, 1, 2]
    assert script.requests[0]["path"] == "/v1/jobs/j1/results?offset=0&limit=2"
    assert script.requests[1]["path"] == "/v1/jobs/j1/results?offset=2&limit=2"


# --------------------------------------------------------------------------- pure helpers


PNG_PREFIX = "data:image/png;base64,"


def test_encode_image_accepts_bytes_strings_and_paths(tmp_path: Path):
    raw = b"\x89PNG\r\n"
    data_url = PNG_PREFIX + base64.b64encode(raw).decode()
    assert encode_image(raw) == data_url
    assert encode_image(data_url) == data_url
    assert encode_image("iVBORw0KGgo=") == "iVBORw0KGgo="
    (tmp_path / "a.png").write_bytes(raw)
    assert encode_image(tmp_path / "a.png") == data_url
    with pytest.raises(TypeError):
        encode_image(42)  # type: ignore[arg-type]
    assert encoded_size(len(raw)) >= len(json.dumps(data_url)) + 1


@pytest.mark.parametrize("fmt,media", [("PNG", "png"), ("JPEG", "jpeg"), ("WEBP", "webp"), ("GIF", "gif"),
                                       ("BMP", "bmp")])
def test_encode_image_names_the_format_the_bytes_hold(fmt, media):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buf, fmt)
    raw = buf.getvalue()
    data_url = encode_image(raw)
    assert data_url == f"data:image/{media};base64," + base64.b64encode(raw).decode()
    assert encoded_size(len(raw)) >= len(json.dumps(data_url)) + 1


def test_folders_are_searched_for_every_format_workers_read():
    from PIL import Image

    from worker.preprocess import ACCEPTED_FORMATS

    readable = {ext for ext, fmt in Image.registered_extensions().items() if fmt in ACCEPTED_FORMATS}
    assert IMAGE_SUFFIXES <= readable
    assert {Image.registered_extensions()[ext] for ext in IMAGE_SUFFIXES} == ACCEPTED_FORMATS


def test_plan_batches_respects_both_limits_and_keeps_order():
    assert plan_batches([10] * 7, max_images=3, max_request_bytes=10_000) == [range(3), range(3, 6), range(6, 7)]
    batches = plan_batches([400, 400, 400, 100], max_images=100, max_request_bytes=64 + 850)
    assert batches == [range(2), range(2, 4)]
    assert plan_batches([], 5, 1000) == []
    with pytest.raises(errors.PayloadTooLarge):
        plan_batches([10, 5000], max_images=5, max_request_bytes=1000)


def test_parse_retry_after_takes_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)


def test_backoff_honours_retry_after_and_grows_otherwise():
    assert backoff_delay(0, 2.0, rng=lambda: 0.0) == 2.0
    assert 2.0 <= backoff_delay(5, 2.0) <= 2.2
    assert [backoff_delay(a, rng=lambda: 1.0) for a in range(7)] == [0.25, 0.5, 1, 2, 4, 8, 8]
    assert backoff_delay(3, rng=lambda: 0.0) == 1.0


def test_find_images_sorts_folders_recursively(tmp_path: Path):
    for name in ("b.png", "a.PNG", "sub/c.png", "sub/d.jpg", "e.JPEG", "f.webp", "notes.txt", "scan.tiff"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = find_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.PNG", "b.png", "e.JPEG", "f.webp", "sub/c.png", "sub/d.jpg"]
    with pytest.raises(FileNotFoundError):
        find_images([tmp_path / "missing"])


# --------------------------------------------------------------------------- against the real service


@pytest.fixture
def client(live_service) -> Iterator[Client]:
    with Client(live_service.url, timeout=30) as c:
        yield c


def test_limits_are_published(client):
    limits = client.limits()
    assert limits["max_images_per_job"] >= 1 and limits["max_request_bytes"] > 0
    assert "png" in limits["formats"]


def test_job_round_trip_in_order_across_pages(client, canvas_pngs):
    images = [png for png, _ in canvas_pngs[:200]]
    seen: list[dict[str, Any]] = []
    job = client.submit(images)
    assert job["status"] == "queued" and job["total"] == len(images)
    final = client.wait(job["id"], progress=seen.append, poll_interval_s=0.2)
    assert final["status"] in ("succeeded", "partially_succeeded")
    assert final["done"] == len(images) and seen[-1] == final
    assert [j["done"] for j in seen] == sorted(j["done"] for j in seen)  # progress never goes back
    items = list(client.results(job["id"], page_size=64))  # four pages
    assert [item["index"] for item in items] == list(range(len(images)))
    labels = [label for _, label in canvas_pngs[:200]]
    right = sum(item.get("prediction") == label for item, label in zip(items, labels))
    assert right / len(images) > 0.3, f"only {right}/{len(images)} right"
    for item in items:
        if "error" not in item:
            assert len(item["top5"]) == 5 and item["top5"][0]["label"] == item["prediction"]


def test_submit_accepts_bytes_data_urls_and_bare_base64(client, clear_pngs):
    png, _ = clear_pngs[0]
    b64 = base64.b64encode(png).decode()
    job = client.submit([png, PNG_PREFIX + b64, b64, b"definitely not a png"])
    client.wait(job["id"], poll_interval_s=0.2)
    items = list(client.results(job["id"]))
    assert len({item["prediction"] for item in items[:3]}) == 1
    assert items[3]["error"]["code"] in ("invalid_image", "unsupported_format")


def test_submit_files_splits_within_limits(client, clear_pngs, tmp_path, monkeypatch):
    for i in range(5):
        (tmp_path / f"img{i}.png").write_bytes(clear_pngs[i % len(clear_pngs)][0])
    real_limits = client.limits()
    monkeypatch.setattr(client, "limits", lambda: {**real_limits, "max_images_per_job": 2})
    jobs = client.submit_files([tmp_path])
    assert [job["total"] for job in jobs] == [2, 2, 1]
    assert [Path(f).name for job in jobs for f in job["files"]] == [f"img{i}.png" for i in range(5)]
    for job in jobs:
        assert client.wait(job["id"], poll_interval_s=0.2)["status"] == "succeeded"


def test_same_idempotency_key_returns_the_same_job(client, clear_pngs):
    png, _ = clear_pngs[0]
    first = client.submit([png], idempotency_key="test-client-idem-1")
    second = client.submit([png], idempotency_key="test-client-idem-1")
    assert first["id"] == second["id"]


def test_predict_clear_drawings(client, clear_pngs):
    right = [client.predict(png)["prediction"] == label for png, label in clear_pngs]
    assert sum(right) >= 0.8 * len(right), right


def test_predict_raises_item_errors_with_their_code(client):
    with pytest.raises(errors.ItemError) as info:
        client.predict(b"this is not a png")
    assert info.value.status_code == 422 and info.value.code in ("invalid_image", "unsupported_format")
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)).save(blank, "PNG")
    with pytest.raises(errors.BlankImage):
        client.predict(blank.getvalue())


def test_unknown_job_raises_job_not_found(client):
    with pytest.raises(errors.JobNotFound) as info:
        client.job("no-such-job-0000")
    assert info.value.status_code == 404 and info.value.code == "job_not_found"


def test_cancel_returns_the_job_document(client, canvas_pngs):
    job = client.submit([png for png, _ in canvas_pngs[:50]])
    cancelled = client.cancel(job["id"])
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] in ("cancelled", "succeeded", "partially_succeeded")
    assert client.wait(job["id"], poll_interval_s=0.2, timeout_s=30)["status"] == cancelled["status"]
