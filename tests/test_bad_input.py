"""Malformed everything: a 4xx JSON error or a per-item error, never a 5xx or a dead worker."""

from __future__ import annotations

import base64
import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.hostile import cases

FINISHED = {"succeeded", "partially_succeeded", "failed", "cancelled"}


def b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode()


def finish(client: httpx.Client, job_id: str) -> dict:
    return wait_until(lambda: (d := client.get(f"/v1/jobs/{job_id}").json())["status"] in FINISHED and d,
                      60, "job to finish", 0.05)


def workers_alive(service) -> bool:
    return all(p.poll() is None for p in service.procs.values())


def test_hostile_images_are_item_errors(live_service, clear_pngs):
    named = cases(clear_pngs[0][0])
    names = list(named)
    with live_service.client() as client:
        resp = client.post("/v1/jobs", json={"images": [b64(named[n][0]) for n in names]})
        assert resp.status_code == 202
        doc = finish(client, resp.json()["id"])
        items = client.get(f"/v1/jobs/{doc['id']}/results").json()["items"]
        assert doc["status"] == "partially_succeeded" and doc["done"] == len(names)
        by_name = dict(zip(names, items))
        for name, (_, expect) in named.items():
            item = by_name[name]
            if expect == "ok":
                assert "prediction" in item, (name, item)
            elif expect == "error":
                assert item["error"]["code"] in {"invalid_base64", "invalid_image", "image_too_large",
                                                 "unsupported_format", "blank_image"}, (name, item)
        assert by_name["huge_20000"]["error"]["code"] == "image_too_large"
        assert by_name["bomb_header"]["error"]["code"] == "image_too_large"
        assert by_name["blank_white"]["error"]["code"] == "blank_image"
        # The same images one at a time on /predict: 200 or a 4xx JSON error.
        for name in names:
            r = client.post("/predict", json={"image": b64(named[name][0])})
            assert r.status_code in (200, 422), (name, r.status_code, r.text)
    assert workers_alive(live_service)


def test_huge_strings_and_odd_bodies(live_service):
    with live_service.client() as client:
        for body in (b"", b"null", b"\xff\xfe\x00", b'{"images": {"a": 1}}',
                     b'{"image": "' + b"A" * 3_000_000 + b'"}'):
            for path in ("/v1/jobs", "/predict"):
                r = client.post(path, content=body, headers={"Content-Type": "application/json"})
                assert 400 <= r.status_code < 500, (path, body[:40], r.status_code)
                assert "error" in r.json()
        # An item that is not a string is an error on that item (see test_service).
        for body in (b'{"images": [null]}', b'{"images": [[]]}'):
            r = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 202 and r.json()["failed"] == 1, r.text
        r = client.post("/v1/jobs", json={"images": ["A" * 3_000_000]})
        assert r.status_code == 202
        assert finish(client, r.json()["id"])["failed"] == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: httpx.Request("POST", "/", json=v).content),
    st.lists(st.text(alphabet=string.ascii_letters + string.digits + "+/=:;,", max_size=60), max_size=6)
      .map(lambda imgs: httpx.Request("POST", "/", json={"images": imgs}).content),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=bodies, path=st.sampled_from(["/v1/jobs", "/predict"]))
def test_fuzzed_bodies_never_5xx(live_service, body, path):
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (path, body[:80], r.status_code, r.text[:200])
    assert r.headers["Content-Type"].startswith("application/json")


@st.composite
def images(draw) -> str:
    """PNG-ish bytes: real images of every mode and size, mangled or not, as base64."""
    import io

    from PIL import Image

    kind = draw(st.sampled_from(["image", "image", "image", "bytes", "mangled"]))
    if kind == "bytes":
        return b64(draw(st.binary(max_size=300)))
    mode = draw(st.sampled_from(["1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I", "F"]))
    w, h = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    fmt = draw(st.sampled_from(["PNG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "JPEG"]))
    seed = draw(st.integers(0, 2**32 - 1))
    import numpy as np

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
    if draw(st.booleans()):  # a drawn stroke on a plain background
        img = Image.new("L", (w, h), int(rng.integers(0, 256)))
        img.paste(int(rng.integers(0, 256)), (w // 4, h // 8, w // 4 + max(1, w // 6), h - h // 8))
    try:
        img = img.convert(mode)
        buf = io.BytesIO()
        img.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):
        img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
    data = buf.getvalue()
    if kind == "mangled":
        cut = draw(st.integers(0, len(data)))
        data = data[:cut] + draw(st.binary(max_size=20))
    return b64(data)


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(images(), min_size=20, max_size=30))
def test_fuzzed_images_are_classified_or_item_errors(live_service, batch):
    with httpx.Client(base_url=live_service.url, timeout=30) as client:
        r = client.post("/v1/jobs", json={"images": batch})
        assert r.status_code == 202, r.text
        doc = finish(client, r.json()["id"])
        assert doc["done"] == len(batch) and doc["status"] != "cancelled"
        items = client.get(f"/v1/jobs/{doc['id']}/results").json()["items"]
    assert len(items) == len(batch)
    for item in items:
        assert ("prediction" in item) != ("error" in item)
    assert workers_alive(live_service)
