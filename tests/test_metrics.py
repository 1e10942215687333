"""/metrics: a valid Prometheus exposition whose counters move by exactly a job's images."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from inkq.procs import stop_all
from tests.conftest import data_url, start_service, wait_until


@pytest.fixture(scope="module")
def service(redis_server, tmp_path_factory):
    svc = start_service(redis_server.url, tmp_path_factory.mktemp("metrics"))
    try:
        yield svc
    finally:
        stop_all(list(svc.procs.values()))


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    resp = httpx.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):  # raises on a malformed exposition
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_by_exactly_the_images_of_a_job(service, canvas_pngs):
    images = [data_url(png) for png, _ in canvas_pngs[:100]] + ["not base64!", ""]
    before = scrape(service.url)
    job = httpx.post(f"{service.url}/v1/jobs", json={"images": images}).json()
    wait_until(lambda: httpx.get(f"{service.url}/v1/jobs/{job['id']}").json()["status"]
               == "partially_succeeded", 60, "the job")
    after = scrape(service.url)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("inkq_images_total", outcome="classified") == 100
    assert delta("inkq_images_total", outcome="error") == 2
    assert delta("inkq_jobs_submitted_total") == 1
    assert delta("inkq_jobs_finished_total", status="partially_succeeded") == 1
    chunks = -(-102 // 32)
    assert delta("inkq_chunk_images_count") == chunks
    assert delta("inkq_chunk_images_sum") == 102
    for stage in ("queue_wait", "decode_preprocess", "inference", "result_write"):
        assert delta("inkq_stage_seconds_count", stage=stage) == chunks, stage
    assert value(after, "inkq_model_info", version=job["model_version"]) == 1
    assert value(after, "inkq_workers_alive") >= 1
    assert (("inkq_queue_depth", (("queue", "inkq.bulk"),)) in after)
    assert delta("inkq_http_requests_total", route="/v1/jobs", method="POST", status="202") == 1
