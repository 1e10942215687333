"""End to end: the real API, real Redis and real Celery worker processes."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

import worker
from tests.conftest import data_url, wait_until

FINISHED = {"succeeded", "partially_succeeded", "failed", "cancelled"}


def wait_finished(client: httpx.Client, job_id: str, timeout_s: float = 120) -> dict:
    def finished():
        doc = client.get(f"/v1/jobs/{job_id}").json()
        return doc if doc["status"] in FINISHED else None

    return wait_until(finished, timeout_s, f"job {job_id} to finish", interval_s=0.2)


def all_results(client: httpx.Client, job_id: str, limit: int = 100) -> list[dict]:
    items, url = [], f"/v1/jobs/{job_id}/results?limit={limit}"
    while url:
        page = client.get(url).json()
        items += page["items"]
        url = page["next"]
    return items


def assert_same_results(got: list[dict], expected: list[dict], tol: float = 1e-4) -> None:
    """The same items but for the last (fourth) decimal of a probability; an
    answer may differ only where its two best probabilities are that close."""
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        if "error" in a or "error" in b:
            assert a == b
            continue
        pa = {t["label"]: t["prob"] for t in a["top5"]}
        pb = {t["label"]: t["prob"] for t in b["top5"]}
        assert len(pa.keys() & pb.keys()) >= 4, (a, b)
        assert all(abs(pa[k] - pb[k]) <= tol + 1e-9 for k in pa.keys() & pb.keys()), (a, b)
        assert a["prediction"] == b["prediction"] or a["top5"][0]["prob"] - a["top5"][1]["prob"] <= 2 * tol, (a, b)


def test_bulk_job_end_to_end(live_service, canvas_pngs):
    images = [data_url(png) for png, _ in canvas_pngs]
    images.insert(7, base64.b64encode(b"this is not an image").decode())
    images.insert(100, "data:image/png;base64,!!!not base64!!!")
    with live_service.client() as client:
        resp = client.post("/v1/jobs", json={"images": images})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert job["status"] in ("queued", "running")
        assert job["total"] == len(images)
        assert resp.headers["Location"] == job["links"]["self"] == f"/v1/jobs/{job['id']}"
        assert len(job["id"]) >= 22

        doc = wait_finished(client, job["id"])
        assert doc["status"] == "partially_succeeded"
        assert (doc["total"], doc["done"], doc["failed"], doc["succeeded"]) == (
            len(images), len(images), 2, len(images) - 2)
        assert doc["started_at"] and doc["finished_at"] and doc["expires_at"]
        assert doc["model_version"]

        items = all_results(client, job["id"])
    assert [it["index"] for it in items] == list(range(len(images)))
    assert items[7]["error"]["code"] == "invalid_image"
    assert items[100]["error"]["code"] == "invalid_base64"

    # What the in-process library gives for the same images: the same answers,
    # the probabilities to their last digit (the matrix products of a chunk
    # round differently from those of one batch of all the images).
    expected = worker.classify(images)
    assert_same_results([{k: v for k, v in it.items() if k != "index"} for it in items], expected)

    good = [it for i, it in enumerate(items) if i not in (7, 100)]
    labels = [label for _, label in canvas_pngs]
    for it in good:
        assert len(it["top5"]) == 5 and it["prediction"] == it["top5"][0]["label"]
        probs = [c["prob"] for c in it["top5"]]
        assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    accuracy = sum(it["prediction"] == lab for it, lab in zip(good, labels)) / len(labels)
    top5 = sum(lab in {c["label"] for c in it["top5"]} for it, lab in zip(good, labels)) / len(labels)
    assert accuracy > 0.75, accuracy  # chance is 1/47
    assert top5 > 0.93, top5


def test_results_are_readable_while_running_and_paged(live_service, canvas_pngs):
    images = [data_url(png) for png, _ in canvas_pngs[:50]]
    with live_service.client() as client:
        job = client.post("/v1/jobs", json={"images": images}).json()
        page = client.get(f"/v1/jobs/{job['id']}/results?offset=0&limit=20").json()
        assert page["next"] == f"/v1/jobs/{job['id']}/results?offset=20&limit=20"
        assert all(0 <= it["index"] < 20 for it in page["items"])
        wait_finished(client, job["id"])
        last = client.get(f"/v1/jobs/{job['id']}/results?offset=40&limit=20").json()
        assert last["next"] is None
        assert [it["index"] for it in last["items"]] == list(range(40, 50))


def test_predict_clear_drawings(live_service, clear_pngs):
    with live_service.client() as client:
        for png, char in clear_pngs:
            resp = client.post("/predict", json={"image": data_url(png)})
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert set(body) == {"prediction", "confidence", "top5"}
            assert body["prediction"] == char, (char, body["top5"])
        bare = base64.b64encode(clear_pngs[0][0]).decode()
        assert client.post("/predict", json={"image": bare}).json()["prediction"] == clear_pngs[0][1]


def test_images_as_files(live_service, clear_pngs):
    """`curl -F image=@x.png`, `curl --data-binary @x.png -H 'Content-Type: image/png'`
    and a job of files get the answers a JSON body gets."""
    png, char = clear_pngs[0]
    with live_service.client() as client:
        expected = client.post("/predict", json={"image": data_url(png)}).json()
        resp = client.post("/predict", files={"image": ("drawing.png", png, "image/png")})
        assert resp.status_code == 200, resp.text
        assert resp.json() == expected and expected["prediction"] == char
        resp = client.post("/predict", content=png, headers={"Content-Type": "image/png"})
        assert resp.status_code == 200 and resp.json() == expected
        files = [("images", (f"{i}.png", p, "image/png")) for i, (p, _) in enumerate(clear_pngs)]
        files.insert(1, ("images", ("broken.png", b"\x89PNG broken", "image/png")))
        job = client.post("/v1/jobs", files=files)
        assert job.status_code == 202, job.text
        wait_finished(client, job.json()["id"])
        items = client.get(f"/v1/jobs/{job.json()['id']}/results").json()["items"]
    assert items[1]["error"]["code"] == "invalid_image"
    assert [it["prediction"] for i, it in enumerate(items) if i != 1] == [c for _, c in clear_pngs]


def test_an_image_by_itself_is_the_body_whatever_its_label(live_service, clear_pngs):
    """`curl --data-binary @x.png` (which labels it a form), a file under any
    label, and a data URL or base64 as text (what `fetch(url, {body:
    canvas.toDataURL()})` sends): the body is the image."""
    png, char = clear_pngs[0]
    drawing = Image.open(io.BytesIO(png)).convert("RGBA")
    jpeg = io.BytesIO()
    Image.alpha_composite(Image.new("RGBA", drawing.size, "white"), drawing).convert("RGB").save(
        jpeg, format="JPEG", quality=95)
    bodies = [(png, "application/x-www-form-urlencoded"), (png, None), (png, "application/json"),
              (jpeg.getvalue(), "application/x-www-form-urlencoded"),
              (data_url(png).encode(), "text/plain;charset=UTF-8"), (data_url(png).encode() + b"\n", None),
              (base64.b64encode(png), "text/plain"), (base64.encodebytes(png), "application/json")]
    with live_service.client() as client:
        for body, label in bodies:
            headers = {"Content-Type": label} if label else {}
            resp = client.post("/predict", content=body, headers=headers)
            assert resp.status_code == 200 and resp.json()["prediction"] == char, (body[:24], label, resp.text)
        resp = client.post("/v1/jobs", content=png, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert resp.status_code == 415 and "multipart" in resp.json()["error"]["message"]


def test_images_as_form_fields(live_service, clear_pngs):
    """An HTML form or `curl -d image=<base64>`: the fields of a form-encoded
    body, with base64's `+` escaped or (as `curl -d` sends it) not."""
    from urllib.parse import quote

    png, char = clear_pngs[0]
    bare = base64.b64encode(png).decode()
    assert "+" in bare  # else the unescaped case below proves nothing
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with live_service.client() as client:
        expected = client.post("/predict", json={"image": bare}).json()
        assert expected["prediction"] == char
        for body in ("image=" + quote(bare, safe=""), "image=" + bare, "image=" + quote(data_url(png), safe="")):
            resp = client.post("/predict", content=body, headers=form)
            assert resp.status_code == 200 and resp.json() == expected, resp.text
        body = "&".join("images=" + b64 for b64 in [bare, "!!", base64.b64encode(clear_pngs[1][0]).decode()])
        job = client.post("/v1/jobs", content=body, headers=form)
        assert job.status_code == 202, job.text
        wait_finished(client, job.json()["id"])
        items = client.get(f"/v1/jobs/{job.json()['id']}/results").json()["items"]
    assert [it.get("prediction") or it["error"]["code"] for it in items] == [char, "invalid_base64", clear_pngs[1][1]]


def test_predict_bad_images_are_4xx(live_service):
    with live_service.client() as client:
        resp = client.post("/predict", json={"image": base64.b64encode(b"GIF89a-nope").decode()})
        assert resp.status_code == 422
        assert resp.json()["error"]["code"] == "invalid_image"
        resp = client.post("/predict", json={"image": 42})
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == "validation_failed"


@pytest.mark.parametrize("body, code", [
    (b"{not json", "invalid_json"),
    (b"[]", "validation_failed"),
    (b'{"images": "abc"}', "validation_failed"),
    (b'{"images": []}', "validation_failed"),
    (b'{"pictures": ["abc"]}', "validation_failed"),
])
def test_malformed_job_bodies_are_400(live_service, body, code):
    with live_service.client() as client:
        resp = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == code


def test_items_that_are_not_strings_are_item_errors(live_service, clear_pngs):
    """A null, a number or an object among a job's images costs that item only."""
    png, char = clear_pngs[0]
    with live_service.client() as client:
        resp = client.post("/v1/jobs", json={"images": [None, data_url(png), 7, {"data": "x"}, [], True]})
        assert resp.status_code == 202, resp.text
        doc = wait_finished(client, resp.json()["id"])
        items = client.get(f"/v1/jobs/{doc['id']}/results").json()["items"]
    assert (doc["status"], doc["failed"], doc["succeeded"]) == ("partially_succeeded", 5, 1)
    assert items[1]["prediction"] == char
    kinds = ["null", None, "a number", "an object", "a list", "a boolean"]
    for item, kind in zip(items, kinds):
        if kind:
            assert item["error"]["code"] == "invalid_base64" and kind in item["error"]["message"], item


_CHUNKED = (b"POST PATH HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


@pytest.mark.parametrize("raw, status, code", [
    (b"GET /v1/jobs/" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GARBAGE\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n", 400, "bad_request"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431,
     "request_header_fields_too_large"),
    # Bodies the server cannot decode, found as the app reads them.
    (_CHUNKED.replace(b"PATH", b"/predict") + b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_request"),
    (_CHUNKED.replace(b"PATH", b"/v1/jobs") + b"2\r\n{}XX0\r\n\r\n", 400, "bad_request"),
    (_CHUNKED.replace(b"PATH", b"/v1/jobs") + b"2;\x00\r\n{}\r\n0\r\n\r\n", 400, "bad_request"),
    (_CHUNKED.replace(b"PATH", b"/predict").replace(b"application/json", b"multipart/form-data; boundary=b")
     + b"5\r\n--b\r\n\r\nzz\r\n", 400, "bad_request"),
])
def test_requests_the_server_cannot_parse_get_json_errors(live_service, raw, status, code):
    """gunicorn answers the first of these before the app sees them, and the
    app the broken chunked bodies; the answer is JSON all the same."""
    import json
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(live_service.url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == str(status).encode()
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == code


def test_unknown_job_is_404(live_service):
    with live_service.client() as client:
        for url in ("/v1/jobs/nope", "/v1/jobs/nope/results"):
            resp = client.get(url)
            assert resp.status_code == 404
            assert resp.json()["error"]["code"] == "job_not_found"
        assert client.delete("/v1/jobs/nope").status_code == 404
        resp = client.get("/no/such/route")
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def test_cancel_skips_unclassified_items(live_service, canvas_pngs):
    images = [data_url(png) for png, _ in canvas_pngs] * 8  # ~60 chunks
    with live_service.client() as client:
        job = client.post("/v1/jobs", json={"images": images}).json()
        resp = client.delete(f"/v1/jobs/{job['id']}")
        assert resp.status_code == 200
        assert resp.json()["status"] == "cancelled"
        time.sleep(1.5)  # chunks already reserved find the flag and stop
        doc = client.get(f"/v1/jobs/{job['id']}").json()
    assert doc["status"] == "cancelled"
    assert doc["done"] < doc["total"]


def test_health_probes(live_service):
    with live_service.client() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["workers"] >= 1
