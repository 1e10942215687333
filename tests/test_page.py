"""The page at ``/`` in a real headless Chromium, against the real service.

Playwright drives the system browser (Debian's ``chromium``; Playwright cannot
download one here). Without Playwright or a browser the tests skip locally with
the reason, and fail in CI: a page nobody opened must not pass as tested.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
IN_CI = bool(os.environ.get("CI"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
#: Milliseconds to wait for a prediction or a job; the service answers in well under a second.
WAIT_MS = 20_000


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _chromium() -> str | None:
    """The browser to drive: ``INKQ_CHROMIUM`` if set (and only it), else the system Chromium."""
    explicit = os.environ.get("INKQ_CHROMIUM")
    candidates = [explicit] if explicit else ["/usr/bin/chromium", shutil.which("chromium"),
                                              shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install playwright)")
    executable = _chromium()
    if executable is None:
        _unavailable("no Chromium found (apt-get install chromium, or set INKQ_CHROMIUM)")
    with sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            _unavailable(f"Chromium at {executable} does not start: {exc}")
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_service) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1,
                                  accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    page.goto(live_service.url + "/")
    yield page
    context.close()
    assert page.js_errors == [], page.js_errors


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes given in a 0..1 square onto the pad with the mouse."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        (x0, y0), rest = stroke[0], stroke[1:]
        page.mouse.move(box["x"] + x0 * box["width"], box["y"] + y0 * box["height"])
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + x * box["width"], box["y"] + y * box["height"], steps=12)
        page.mouse.up()


L_STROKES = [[(0.34, 0.16), (0.34, 0.84), (0.73, 0.84)]]
T_STROKES = [[(0.18, 0.18), (0.82, 0.18)], [(0.5, 0.18), (0.5, 0.84)]]


def test_draw_and_predict(page):
    from playwright.sync_api import expect

    expect(page.locator("#service-status")).to_have_attribute("data-state", "ready")
    draw(page, L_STROKES)  # "recognise as I draw" is on: the answer comes by itself
    expect(page.locator("#predict-text")).to_have_text("L")
    bars = page.locator("#top5 li")
    expect(bars).to_have_count(5)
    assert bars.first.locator(".label").inner_text() == "L"
    assert page.locator("#predict-result").get_attribute("aria-live") == "polite"

    # The exported drawing is dark ink on a transparent canvas, as the service expects.
    alpha = page.evaluate("""() => {
        const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let clear = 0, ink = 0;
        for (let i = 3; i < d.length; i += 4) { if (d[i] === 0) clear++; else if (d[i] > 200) ink++; }
        return {clear, ink, total: d.length / 4};
    }""")
    assert alpha["clear"] > 0.7 * alpha["total"] and alpha["ink"] > 0.02 * alpha["total"]

    # Keyboard only: clear with Delete, then a two-stroke "T" recognised with Enter.
    page.locator("#auto-predict").uncheck()
    page.locator("#pad").focus()
    page.keyboard.press("Delete")
    expect(page.locator("#top5 li")).to_have_count(0)
    draw(page, T_STROKES)
    page.locator("#pad").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#predict-text")).to_have_text("T")


def test_bulk_upload_progress_table_and_download(page, clear_pngs, tmp_path):
    from playwright.sync_api import expect

    from PIL import Image

    paths = []
    for i, (png, label) in enumerate(clear_pngs):
        if i in (1, 2):  # a photo's JPEG and a WebP, dark ink on white, beside the canvas PNGs
            drawn = Image.open(io.BytesIO(png)).convert("RGBA")
            page_ = Image.alpha_composite(Image.new("RGBA", drawn.size, "white"), drawn).convert("RGB")
            paths.append(tmp_path / f"{i:02d}-drawn-{label}.{'jpg' if i == 1 else 'webp'}")
            page_.save(paths[-1], "JPEG" if i == 1 else "WEBP")
        else:
            paths.append(tmp_path / f"{i:02d}-drawn-{label}.png")
            paths[-1].write_bytes(png)
    broken = tmp_path / "99-broken.png"
    broken.write_bytes(b"definitely not a png")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.locator("#file-input").set_input_files([str(p) for p in [*paths, broken, notes]])
    expect(page.locator("#selection-text")).to_contain_text(f"{len(paths) + 1} images selected")
    expect(page.locator("#selection-text")).to_contain_text("1 other file skipped")
    page.locator("#submit-btn").click()

    expect(page.locator("#bulk-progress")).to_have_attribute("aria-valuenow", "100")
    rows = page.locator("#results-table tbody tr")
    expect(rows).to_have_count(len(paths) + 1)
    predictions = [rows.nth(i).locator("td.pred").inner_text() for i in range(len(paths))]
    right = sum(p == label for p, (_, label) in zip(predictions, clear_pngs))
    assert right >= 0.8 * len(paths), predictions
    expect(rows.nth(len(paths))).to_have_class("errored")
    expect(rows.nth(len(paths)).locator("td.err")).to_contain_text("Not")
    expect(page.locator("#results-summary")).to_contain_text(f"{len(paths)} of {len(paths) + 1} images classified")
    expect(page.locator("#results-table tbody tr img.thumb")).to_have_count(len(paths))
    expect(rows.nth(len(paths)).locator(".thumb-none")).to_have_count(1)  # no preview for a non-image

    with page.expect_download() as info:
        page.locator("#download-csv").click()
    table = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text())))
    assert [r["file"] for r in table] == [p.name for p in [*paths, broken]]
    assert [r["prediction"] for r in table[:-1]] == predictions and table[-1]["error"]
    with page.expect_download() as info:
        page.locator("#download-json").click()
    assert len(json.loads(Path(info.value.path()).read_text())) == len(paths) + 1

    # For the README: the page with a drawing recognised and a bulk job done.
    draw(page, L_STROKES)
    expect(page.locator("#predict-text")).to_have_text("L")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (429, {"error": {"code": "rate_limited", "message": "Slow down."}}, {"Retry-After": "7"},
         "Too many requests right now. Try again in 7 s."),
        (503, {"error": {"code": "no_workers", "message": "No worker is running."}}, {},
         "No recognition workers are running"),
        (413, {"error": {"code": "image_too_large", "message": "The image exceeds 1000 bytes."}}, {},
         "more than the service accepts"),
        (422, {"error": {"code": "blank_image", "message": "The image is blank."}}, {},
         "No drawing found"),
        (502, "<html>Bad gateway</html>", {}, "HTTP 502"),
        (None, None, {}, "Can't reach the inkq service"),
    ],
)
def test_api_errors_are_readable(page, status, body, headers, expected):
    from playwright.sync_api import expect

    def answer(route):
        if status is None:
            route.abort("connectionrefused")
        else:
            route.fulfill(status=status, headers=headers,
                          content_type="application/json" if isinstance(body, dict) else "text/html",
                          body=json.dumps(body) if isinstance(body, dict) else body)

    page.route("**/predict", answer)
    page.locator("#auto-predict").uncheck()
    draw(page, L_STROKES)
    page.locator("#predict-btn").click()
    alert = page.locator("#predict-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(expected)
    assert "{" not in alert.inner_text()


def test_bulk_submit_error_is_readable(page, clear_pngs, tmp_path):
    from playwright.sync_api import expect

    page.route("**/v1/jobs", lambda route: route.fulfill(
        status=413, content_type="application/json",
        body=json.dumps({"error": {"code": "payload_too_large", "message": "The request body is too large."}})))
    path = tmp_path / "a.png"
    path.write_bytes(clear_pngs[0][0])
    page.locator("#file-input").set_input_files(str(path))
    page.locator("#submit-btn").click()
    expect(page.locator("#bulk-error")).to_contain_text("more than the service accepts in one request")
    expect(page.locator("#submit-btn")).to_be_enabled()


def test_phone_sized_screen(browser, live_service):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto(live_service.url + "/")
        layout = page.evaluate("""() => ({
            scroll: document.documentElement.scrollWidth,
            pad: document.getElementById('pad').getBoundingClientRect().width,
            touch: getComputedStyle(document.getElementById('pad')).touchAction,
        })""")
        assert layout["scroll"] <= 390, "the page scrolls sideways on a phone"
        assert 250 <= layout["pad"] <= 390 and layout["touch"] == "none"
        for button in ("#predict-btn", "#clear-btn", "#undo-btn"):
            assert page.locator(button).bounding_box()["height"] >= 32  # big enough for a finger
    finally:
        context.close()


@pytest.fixture
def prefixed_url(live_service) -> Iterator[str]:
    """The API mounted under ``/inkq/`` (as behind a reverse proxy that sets
    SCRIPT_NAME), served by werkzeug in a thread, on the live service's Redis."""
    import threading

    from werkzeug.exceptions import NotFound
    from werkzeug.middleware.dispatcher import DispatcherMiddleware
    from werkzeug.serving import make_server

    from api import create_app
    from inkq.settings import Settings

    app = create_app(Settings.from_env({**os.environ, **live_service.env, "REDIS_URL": live_service.redis_url}))
    server = make_server("127.0.0.1", 0, DispatcherMiddleware(NotFound(), {"/inkq": app}), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/inkq/"
    server.shutdown()


def test_page_works_under_a_path_prefix(browser, prefixed_url):
    """Every URL the page uses is relative, so it works wherever the API is mounted."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(prefixed_url) else outside.append(r.url))
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.goto(prefixed_url)
    expect(page.locator("#service-status")).to_have_attribute("data-state", "ready")
    draw(page, L_STROKES)
    expect(page.locator("#predict-text")).to_have_text("L")
    page.goto(prefixed_url + "docs")
    expect(page.locator("#subtitle")).not_to_contain_text("Loading")
    expect(page.locator("#predict")).to_contain_text(
        "Also accepted as multipart/form-data, application/x-www-form-urlencoded, image/*")
    context.close()
    assert outside == [] and failed == [], (outside, failed)
