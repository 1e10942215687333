"""The API app on its own (Flask's test client) against a real Redis: validation and limits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from api import create_app
from inkq.settings import Settings


@pytest.fixture()
def client(redis_server):
    settings = Settings.from_env({}, redis_url=redis_server.url, max_request_bytes=10_000,
                                 max_images_per_job=3, max_image_bytes=300)
    return create_app(settings).test_client()


def test_importing_api_keeps_it_thin():
    code = ("import sys, api; api.create_app(); "
            "print(','.join(m for m in ('numpy', 'sklearn', 'PIL', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_body_too_large_is_413(client):
    resp = client.post("/v1/jobs", data=b'{"images": ["' + b"A" * 20_000 + b'"]}',
                       content_type="application/json")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_too_many_images_is_413(client):
    resp = client.post("/v1/jobs", json={"images": ["AAAA"] * 4})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_oversized_and_empty_images_are_item_errors(client):
    resp = client.post("/v1/jobs", json={"images": ["", "A" * 1000]})
    assert resp.status_code == 202
    job = resp.get_json()
    # Nothing is left for a worker: every item was answered up front.
    assert (job["status"], job["done"], job["failed"]) == ("failed", 2, 2)
    items = client.get(job["links"]["results"]).get_json()["items"]
    assert [it["error"]["code"] for it in items] == ["invalid_image", "image_too_large"]


@pytest.mark.parametrize("url, key", [("/v1/jobs", "images"), ("/predict", "image")])
def test_bodies_that_are_not_json_are_415_with_a_hint(client, url, key):
    import gzip
    import json

    body = json.dumps({key: ["AAAA"] if key == "images" else "AAAA"}).encode()
    resp = client.post(url, data=gzip.compress(body), content_type="application/json",
                       headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 415
    assert resp.get_json()["error"]["code"] == "unsupported_media_type"
    assert "uncompressed" in resp.get_json()["error"]["message"]
    for content_type, data in (("image/png", b"\x89PNG\r\n\x1a\n"),
                               ("multipart/form-data; boundary=x", b"--x\r\n\r\n--x--\r\n"),
                               ("application/octet-stream", b"\x00\x01")):
        resp = client.post(url, data=data, content_type=content_type)
        assert resp.status_code == 415, content_type
        assert "must be JSON" in resp.get_json()["error"]["message"]
    # A JSON body is read whatever it is labelled (fetch() sends strings as
    # text/plain, curl -d as a form); a broken one is then plain invalid JSON.
    resp = client.post("/v1/jobs", data=b'{"images": ["AAAA"]}', content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202
    resp = client.post(url, data=b"{nope", content_type="text/plain")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    # A UTF-8 byte order mark before the JSON (PowerShell's Out-File writes one).
    resp = client.post("/v1/jobs", data=b'\xef\xbb\xbf{"images": ["AAAA"]}', content_type="application/json")
    assert resp.status_code == 202


def test_wrong_method_is_json_405(client):
    resp = client.put("/v1/jobs")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=100000", "offset=x", "offset=153711251826874810368"])
def test_bad_paging_is_400(client, query):
    job = client.post("/v1/jobs", json={"images": [""]}).get_json()
    resp = client.get(f"/v1/jobs/{job['id']}/results?{query}")
    assert resp.status_code == 400
