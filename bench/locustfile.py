"""Locust users for inkq's load test (``python -m bench.load``): bulk jobs, single
predictions and polls, all at once, against one running service on loopback.

Every bulk job is followed to the end and its results read back; an item that
does not come back counts as lost. The tallies go to the file named by
``INKQ_LOAD_TALLY`` when the run stops.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from locust import HttpUser, between, events, task

FINISHED = {"succeeded", "partially_succeeded", "failed", "cancelled"}
#: Base64 canvas PNGs, written by bench.load.
IMAGES: list[str] = json.loads(Path(os.environ["INKQ_LOAD_IMAGES"]).read_text())["images"]
TALLY = {"jobs": 0, "images_submitted": 0, "images_returned": 0, "items_lost": 0,
         "jobs_unfinished": 0, "predictions": 0}


class BulkClient(HttpUser):
    """Submits a job of 20-200 images, polls it to the end, reads every result page."""

    weight = 1
    wait_time = between(0.1, 0.5)

    @task
    def bulk_job(self) -> None:
        n = random.randint(20, 200)
        images = random.sample(IMAGES, min(n, len(IMAGES)))
        with self.client.post("/v1/jobs", json={"images": images}, name="POST /v1/jobs",
                              catch_response=True) as resp:
            if resp.status_code != 202:
                resp.failure(f"submit: {resp.status_code}")
                return
            job = resp.json()
        TALLY["jobs"] += 1
        TALLY["images_submitted"] += len(images)
        deadline = time.monotonic() + 120
        doc = job
        while doc["status"] not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.2)
            doc = self.client.get(f"/v1/jobs/{job['id']}", name="GET /v1/jobs/[id]").json()
        if doc["status"] not in FINISHED:
            TALLY["jobs_unfinished"] += 1
            TALLY["items_lost"] += len(images)
            return
        items, url = [], f"/v1/jobs/{job['id']}/results"
        while url:
            page = self.client.get(url, name="GET /v1/jobs/[id]/results").json()
            items += page["items"]
            url = page["next"]
        returned = len({it["index"] for it in items})
        TALLY["images_returned"] += returned
        TALLY["items_lost"] += len(images) - returned


class Person(HttpUser):
    """Someone drawing: one /predict every half second or so."""

    weight = 3
    wait_time = between(0.2, 0.8)

    @task
    def predict(self) -> None:
        with self.client.post("/predict", json={"image": random.choice(IMAGES)}, name="POST /predict",
                              catch_response=True) as resp:
            if resp.status_code == 200:
                TALLY["predictions"] += 1
            elif resp.status_code != 422:  # an unreadable drawing is an answer, not a failure
                resp.failure(f"predict: {resp.status_code}")


@events.test_stop.add_listener
def _write_tally(**_: object) -> None:
    path = os.environ.get("INKQ_LOAD_TALLY")
    if path:
        Path(path).write_text(json.dumps(TALLY))
