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


def _chunked(client, path: str, body: bytes, content_type: str):
    """A POST without Content-Length, its body ending where the stream ends,
    as gunicorn hands the app a chunked upload."""
    import io

    return client.post(path, input_stream=io.BytesIO(body), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked"}, environ_overrides={"wsgi.input_terminated": True})


_PAD = b"A" * 12_000  # an image past the limit of 10,000 bytes, before a job's last one


@pytest.mark.parametrize("content_type, body", [
    ("application/json", b'{"images": ["AAAA", "' + _PAD + b'", "AAAA"]}'),
    # Cut at the limit, a form would still parse, short of its last image.
    ("application/x-www-form-urlencoded", b"images=AAAA&images=" + _PAD + b"&images=AAAA"),
    ("multipart/form-data; boundary=b", b"".join(
        b'--b\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
        for name, value in ((b"images", b"AAAA"), (b"images", _PAD), (b"images", b"AAAA"))) + b"--b--\r\n"),
])
def test_chunked_body_past_the_limit_is_413_not_cut_short(client, content_type, body):
    """werkzeug stops reading a body of unknown length at the limit without
    an error; the rest must not be parsed as if it were the whole body."""
    resp = _chunked(client, "/v1/jobs", body, content_type)
    assert resp.status_code == 413, resp.get_json()
    assert resp.get_json()["error"]["code"] == "payload_too_large"


def test_chunked_body_within_the_limit_is_read(client):
    resp = _chunked(client, "/v1/jobs", b"images=AAAA&images=", "application/x-www-form-urlencoded")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["total"] == 2


def test_unknown_job_is_404_and_a_long_id_is_not_echoed_whole(client):
    resp = client.get("/v1/jobs/" + "a" * 3000)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "job_not_found"
    assert resp.get_json()["error"]["message"] == f"No job '{'a' * 40}...' (unknown, expired, or not yours)."


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
def test_compressed_bodies_are_415_with_a_hint(client, url, key):
    import gzip
    import json

    body = json.dumps({key: ["AAAA"] if key == "images" else "AAAA"}).encode()
    resp = client.post(url, data=gzip.compress(body), content_type="application/json",
                       headers={"Content-Encoding": "gzip"})
    assert resp.status_code == 415
    assert resp.get_json()["error"]["code"] == "unsupported_media_type"
    assert "uncompressed" in resp.get_json()["error"]["message"]
    # A job's images are many: a body that is one image is not a job.
    resp = client.post("/v1/jobs", data=b"\x89PNG\r\n\x1a\n", content_type="image/png")
    assert resp.status_code == 415 and "multipart" in resp.get_json()["error"]["message"]


def test_a_job_of_files_in_a_multipart_form(client):
    """Files in ``images``, in order, each stored as the base64 a JSON body would carry."""
    import base64
    import io

    from inkq import keys

    files = [(io.BytesIO(b"\x89PNG-first"), "a.png"), (io.BytesIO(b""), "empty.png"),
             (io.BytesIO(b"GIF89a"), "c.gif")]
    resp = client.post("/v1/jobs", data={"images": files}, content_type="multipart/form-data")
    assert resp.status_code == 202, resp.get_json()
    job = resp.get_json()
    assert job["total"] == 3 and job["failed"] == 1  # the empty file, refused up front
    redis = client.application.extensions["inkq"].store.redis
    assert redis.lrange(keys.images(job["id"]), 0, -1) == [
        base64.b64encode(b"\x89PNG-first"), b"", base64.b64encode(b"GIF89a")]
    # Files under any other name are taken in the order sent; form fields are the body's.
    resp = client.post("/v1/jobs", data={"file": (io.BytesIO(b"x"), "x.png"), "callback_url": "http://x"},
                       content_type="multipart/form-data")
    assert resp.status_code == 400 and "callback_url" in resp.get_json()["error"]["message"]
    for data in ({}, {"other": "field"}):
        resp = client.post("/v1/jobs", data=data, content_type="multipart/form-data")
        assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "validation_failed"
    # The limits hold as for JSON: images per job, then bytes per image.
    resp = client.post("/v1/jobs", data={"images": [(io.BytesIO(b"x"), f"{i}.png") for i in range(4)]},
                       content_type="multipart/form-data")
    assert resp.status_code == 413
    resp = client.post("/v1/jobs", data={"images": [(io.BytesIO(b"x" * 600), "big.png")]},
                       content_type="multipart/form-data")
    assert resp.status_code == 202 and resp.get_json()["failed"] == 1
    # More parts than a form of that many images needs: werkzeug's own 413, said plainly.
    resp = client.post("/v1/jobs", data={f"f{i}": "x" for i in range(80)}, content_type="multipart/form-data")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["message"] == "The form holds more than 67 parts."


def test_images_in_multipart_text_fields_meet_the_image_limit_not_werkzeugs(redis_server):
    """``curl -F images=<x.b64``: a text field past werkzeug's 500 kB default
    is an image like any other, held to the image and body limits."""
    settings = Settings.from_env({}, redis_url=redis_server.url, max_request_bytes=4_000_000,
                                 max_image_bytes=1_000_000)
    client = create_app(settings).test_client()
    big = "A" * 600_000  # 450 kB of base64: within the image limit
    resp = client.post("/v1/jobs", data={"images": ["AAAA", big]}, content_type="multipart/form-data")
    assert resp.status_code == 202, resp.get_json()
    assert (resp.get_json()["total"], resp.get_json()["failed"]) == (2, 0)
    resp = client.post("/predict", data={"image": "A" * 1_500_000}, content_type="multipart/form-data")
    assert resp.status_code == 413
    assert resp.get_json()["error"]["message"] == "The image exceeds 1000000 bytes."


def test_predict_takes_one_file(client):
    import io

    two = {"image": [(io.BytesIO(b"a"), "a.png"), (io.BytesIO(b"b"), "b.png")]}
    resp = client.post("/predict", data=two, content_type="multipart/form-data")
    assert resp.status_code == 400 and "POST /v1/jobs" in resp.get_json()["error"]["message"]
    resp = client.post("/predict", data={}, content_type="multipart/form-data")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "validation_failed"
    resp = client.post("/predict", data={"image": (io.BytesIO(b"x" * 600), "big.png")},
                       content_type="multipart/form-data")
    assert resp.status_code == 413
    resp = client.post("/predict", data=b"x" * 600, content_type="image/png")
    assert resp.status_code == 413


def test_json_is_read_whatever_its_label(client):
    # A JSON body is read whatever it is labelled (fetch() sends strings as
    # text/plain, curl -d as a form).
    resp = client.post("/v1/jobs", data=b'{"images": ["AAAA"]}', content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202
    # A UTF-8 byte order mark before the JSON (PowerShell's Out-File writes one).
    resp = client.post("/v1/jobs", data=b'\xef\xbb\xbf{"images": ["AAAA"]}', content_type="application/json")
    assert resp.status_code == 202


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_json_in_utf16_or_utf32_is_read(client, encoding):
    # Windows PowerShell 5 writes files in UTF-16 with a byte order mark; JSON
    # parsers tell the encoding from the first four bytes.
    body = '{"images": ["AAAA"]}'.encode(encoding)
    resp = client.post("/v1/jobs", data=body, content_type="application/json")
    assert resp.status_code == 202
    resp = client.post("/v1/jobs", data=body, content_type="text/plain")
    assert resp.status_code == 202
    resp = client.post("/predict", data='{"image": "AAAA"}'.encode(encoding), content_type="application/json")
    assert resp.get_json()["error"]["code"] == "no_workers"  # read and valid: no worker runs here
    resp = client.post("/v1/jobs", data=body[:-1], content_type="application/json")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("url", ["/v1/jobs", "/predict"])
def test_broken_json_under_any_label_is_invalid_json(client, url):
    resp = client.post(url, data=b"{nope", content_type="text/plain")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "invalid_json"
    assert resp.get_json()["error"]["message"].endswith("at line 1 column 2.")  # where the parser stopped


def test_wrong_method_is_json_405(client):
    resp = client.put("/v1/jobs")
    assert resp.status_code == 405
    assert resp.get_json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("query", ["offset=-1", "limit=0", "limit=100000", "offset=x", "offset=153711251826874810368"])
def test_bad_paging_is_400(client, query):
    job = client.post("/v1/jobs", json={"images": [""]}).get_json()
    resp = client.get(f"/v1/jobs/{job['id']}/results?{query}")
    assert resp.status_code == 400


@pytest.mark.parametrize("url", ["/v1/jobs", "/predict"])
def test_a_body_of_countless_tiny_values_is_refused_before_parsing(client, url):
    """Parsed, every JSON value costs about 100 bytes of memory: a body of a
    million zeros would cost 100 MB before validation could refuse it."""
    key = "images" if url == "/v1/jobs" else "image"
    body = b'{"%s": [' % key.encode() + b",".join([b"0"] * 1000) + b"]}"
    resp = client.post(url, data=body, content_type="application/json")
    assert resp.status_code == 413 and "JSON values" in resp.get_json()["error"]["message"]
    # The limit counts what real requests need: a data URL's comma, the list's.
    urls = ["data:image/png;base64,AAAA"] * 3
    resp = client.post("/v1/jobs", json={"images": urls})
    assert resp.status_code == 202


def test_a_form_of_fields_is_read_as_its_json(client):
    resp = client.post("/v1/jobs", data=b"images=AA+A&images=", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 202, resp.get_json()
    assert resp.get_json()["total"] == 2
    resp = client.post("/v1/jobs", data=b"pictures=AAAA", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "validation_failed"
    many = b"&".join([b"images=AAAA"] * 100)
    resp = client.post("/v1/jobs", data=many, content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 413
    # A field's name is whatever the client sent: the answer names 40 characters of it.
    resp = client.post("/predict", data=b"x" * 300 + b"=1", content_type="application/x-www-form-urlencoded")
    message = resp.get_json()["error"]["message"]
    assert resp.status_code == 400 and "x" * 40 + "…" in message and "x" * 41 not in message


def _cors_client(redis_server, origins: str, **settings):
    s = Settings.from_env({}, redis_url=redis_server.url, cors_origins=origins, **settings)
    return create_app(s).test_client()


PREFLIGHT = {"Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization, content-type"}


def test_cors_lets_other_sites_pages_call_the_api(redis_server):
    client = _cors_client(redis_server, "*", require_api_key=True)
    # The browser's preflight carries no key: it is answered before authentication.
    resp = client.options("/v1/jobs", headers={"Origin": "https://app.example", **PREFLIGHT})
    assert resp.status_code == 204 and resp.data == b"" and "Content-Type" not in resp.headers
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert {"authorization", "content-type", "idempotency-key"} <= {
        h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    # Answers, errors included, are readable by the page, with the headers it needs.
    resp = client.post("/v1/jobs", json={"images": ["AAAA"]}, headers={"Origin": "https://app.example"})
    assert resp.status_code == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert "Location" in resp.headers["Access-Control-Expose-Headers"]
    # A request without an Origin (not from a browser page) gets no CORS headers.
    assert "Access-Control-Allow-Origin" not in client.get("/healthz").headers


def test_cors_names_the_origins_allowed(redis_server):
    client = _cors_client(redis_server, "https://app.example, https://b.example/")
    ok = client.options("/predict", headers={"Origin": "https://b.example", **PREFLIGHT})
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert "Origin" in ok.headers["Vary"]
    other = client.options("/predict", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "Access-Control-Allow-Origin" not in other.headers
    resp = client.get("/v1/limits", headers={"Origin": "https://evil.example"})
    assert resp.status_code == 200 and "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers["Vary"]
    off = _cors_client(redis_server, "none")
    resp = off.options("/predict", headers={"Origin": "https://app.example", **PREFLIGHT})
    assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize("proxies", [0, 1])
def test_forwarded_headers_count_only_behind_proxies(redis_server, proxies):
    """Behind INKQ_PROXIES proxies, each client has its own rate limit and the
    links carry the path the proxy serves the API under; without, the headers
    are the client's to forge and change nothing."""
    import uuid

    settings = Settings.from_env({}, redis_url=redis_server.url, rate_limit_per_min=2, proxies=proxies)
    client = create_app(settings).test_client()
    proxy = {"REMOTE_ADDR": f"10.{uuid.uuid4().int % 250}.0.1"}  # a bucket no other test shares

    def post(forwarded_for: str):
        return client.post("/v1/jobs", json={"images": ["AAAA"]}, environ_base=proxy,
                           headers={"X-Forwarded-For": forwarded_for, "X-Forwarded-Prefix": "/inkq"})

    first = uuid.uuid4().hex[:8]
    assert [post(f"203.0.113.{i}, {first}").status_code for i in range(2)] == [202, 202]
    assert post(first).status_code == 429  # the same client: its limit, or the proxy's
    other = post(uuid.uuid4().hex[:8])
    assert other.status_code == (202 if proxies else 429)
    if proxies:
        assert other.get_json()["links"]["self"].startswith("/inkq/v1/jobs/")
