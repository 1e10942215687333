"""Smoke test of the benchmark suite: every measurement on tiny numbers, against a
real stack (embedded Redis, ``inkq api``, ``inkq worker``, the tutorial's worker).

It checks that the run completes and that the JSON has every row with sane
values; it never asserts a performance target (the bench itself reports those).
"""

from __future__ import annotations

import json

import pytest

from inkq.settings import Settings
from tests.conftest import require


@pytest.fixture(scope="module")
def bench_run(emnist_dir, tmp_path_factory):
    s = Settings.from_env()
    require(s.model_path.exists(), f"no model artifact at {s.model_path} (train one: make train)")
    from bench import report
    from bench.run import Config, run

    cfg = Config(images=48, big_job=96, memory_images=192, predicts=8, loaded_predicts=40,
                 e2e_repeats=1, scaling_repeats=1, cpu_images=24, chunk_size=16,
                 command="tests/test_bench.py")
    results = run(cfg, log=lambda m: None)
    out = tmp_path_factory.mktemp("bench")
    rows = report.write(results, out)
    return results, rows, out


EXPECTED_ROWS = {
    "inprocess_1", "inprocess", "e2e", "e2e_ratio", "tutorial", "tutorial_ratio", "e2e_vs_tutorial",
    "cpu_pipeline", "cpu_decode", "cpu_ratio", "model_speed", "rss_process",
    "predict_idle_p50", "predict_idle_p99",
    "ws_1", "ws_n", "ws_n_ratio", "scaling", "scaling_inprocess", "rss_growth",
    "redis_per_image", "redis_per_image_ratio", "broker_largest", "redis_per_result",
    "redis_ops", "redis_net", "redis_cpu", "redis_capacity", "redis_feeds",
}


@pytest.mark.slow
def test_bench_writes_every_row(bench_run):
    results, rows, out = bench_run
    data = json.loads((out / "latest.json").read_text())
    keys = {r["key"] for r in data["rows"]}
    if results["config"]["workers"] == 1:  # a one-core machine has no scaling rows
        keys |= {"inprocess_1", "ws_1", "ws_n", "ws_n_ratio", "scaling", "scaling_inprocess"}
    assert EXPECTED_ROWS <= keys, EXPECTED_ROWS - keys
    if data["machine"]["cores"] == results["config"]["workers"]:
        assert {"e2e_ceiling_outside", "e2e_ceiling_cpu"} <= keys
    assert ("own_core_ratio" in keys) == ("skipped" not in results["own_core"])
    # The loaded /predict rows exist when some requests ran while the bulk job did.
    assert ("predict_loaded_p50" in keys) == bool(results["predict_loaded"].get("requests"))
    # redis-benchmark: measured, or skipped with the reason.
    rb = results["redis_benchmark"]
    assert "skipped" in rb or rb["unpipelined"]
    for r in data["rows"]:
        assert r["status"] in ("met", "NOT met", "-"), r
        assert r["value"] is None or r["value"] == r["value"], r  # no NaN
    assert (out / "latest.md").read_text().count("\n| ") >= len(EXPECTED_ROWS)
    assert (out / "throughput.png").stat().st_size > 1000
    # How busy the machine was is part of every run.
    assert set(data["contention"]) >= {"inprocess_1", "end_to_end_1", "tutorial"}
    m = data["machine"]
    assert m["cores"] >= 1 and m["python"] and m["libraries"]["celery"]


@pytest.mark.slow
def test_bench_values_are_sane(bench_run):
    results, _, _ = bench_run
    n = results["config"]["images"]
    for run in results["end_to_end"]["runs"]:
        assert run["items"] == n and run["status"] in ("succeeded", "partially_succeeded")
        assert run["seconds"] > 0 and run["redis_calls_per_image"] > 0
    assert results["tutorial"]["items"] == n
    # The same model and images classify the same way in both designs.
    assert abs(results["tutorial"]["accuracy"] - results["end_to_end"]["best"]["accuracy"]) < 0.05
    for procs in results["inprocess"].values():
        assert procs["images"] == n and procs["images_per_s"] > 0
    cpu = results["per_image_cpu"]
    assert 0 < cpu["pillow_decode_ms"] < cpu["pipeline_ms"]
    assert cpu["model_images_per_s"] > 1000 / cpu["pipeline_ms"]  # the model is part of the pipeline
    assert results["predict_idle"]["requests"] == results["config"]["predicts"]
    for key in ("1", str(results["config"]["workers"])):
        assert results["worker_side"][key]["images_per_s"] > 0
    q = results["redis_queued"]
    assert q["broker_messages"] == -(-results["config"]["big_job"] // results["config"]["chunk_size"])
    assert 0 < q["broker_largest_message_bytes"] < q["png_mean_bytes"]
    # A queued image holds at least its PNG (as base64 or raw): memory is measured, not zero.
    assert q["bytes_per_queued_image"] > 0.9 * q["png_mean_bytes"]
    assert results["redis_results"]["bytes_per_result"] > 0
    rss = results["worker_rss"]
    assert rss["images"] == results["config"]["memory_images"] and rss["rss_baseline_mb"] > 50
    assert 50 < rss["largest_process_mb"] < rss["rss_end_mb"]
    assert results["tutorial"]["broker_largest_message_bytes"] > q["png_mean_bytes"]
    own = results["own_core"]
    if "skipped" not in own:
        assert len(own["worker_core"]) == 1 and own["other_cores"]
        for pair in own["pairs"]:
            assert pair["ratio"] > 0 and pair["pool_cpu_ms_per_image"] > 0 and pair["inprocess_cpu_ms_per_image"] > 0


def test_robustness_table(emnist_dir):
    """`python -m bench.robustness` on a few images: every page, both ways, sane values."""
    s = Settings.from_env()
    require(s.model_path.exists(), f"no model artifact at {s.model_path} (train one: make train)")
    from bench import robustness

    r = robustness.run(images=6, seed=1)
    assert r["images"] == 6 and "clean" in r["rows"] and len(r["rows"]) == 23
    for v in r["rows"].values():
        assert 0 <= v["with_rules"] <= 1 and 0 <= v["without_rules"] <= 1
    # The rules are switched back on afterwards.
    from worker import preprocess as P

    assert P.STRAY_MASS > 0 and P._SHADE_U8 < 256 and P._FAINT_FLOOR_U8 < P._FLOOR_U8
    assert P.BLOB_EXTENT_PER_WIDTH < P.MIN_EXTENT_PER_WIDTH and P.PAGE_SHARE < 1 and P.THIN_STROKE > 0
    assert P.DOT_PIECES > 0 and P.LINE_SPAN < 1
    assert "| clean |" in robustness.markdown(r)
