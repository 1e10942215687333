"""The benchmark's outputs: rows with targets, a printed table, JSON, Markdown, a chart."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MET, NOT_MET, INFO = "met", "NOT met", "-"


@dataclass
class Row:
    key: str
    what: str
    value: float | None
    unit: str
    target: str = ""
    status: str = INFO
    note: str = ""

    def shown(self) -> str:
        v = self.value
        if v is None:
            return "n/a"
        if self.unit in ("x", "ratio"):
            return f"{v:.2f}x"
        if self.unit == "%":
            return f"{v:+.1f}%"
        if abs(v) >= 100:
            return f"{v:,.0f} {self.unit}".strip()
        return f"{v:.2f} {self.unit}".strip()


def _check(value: float | None, op: str, bound: float) -> str:
    if value is None:
        return NOT_MET
    return MET if (value >= bound if op == ">=" else value <= bound) else NOT_MET


def rows(r: dict[str, Any]) -> list[Row]:
    """The report's rows from the raw results (missing parts are skipped)."""
    out: list[Row] = []
    w = r["config"]["workers"]
    lim = r.get("inprocess", {}).get(str(w), {}).get("images_per_s")

    def ratio(x: float | None) -> float | None:
        return x / lim if (x is not None and lim) else None

    if lim:
        one = r["inprocess"].get("1", {}).get("images_per_s")
        if one and w != 1:
            out.append(Row("inprocess_1", "1. in-process, 1 process", one, "img/s"))
        out.append(Row("inprocess", f"1. in-process limit, {w} processes (the reference)", lim, "img/s"))
    e2e = r.get("end_to_end")
    if e2e:
        best = e2e["best"]
        out.append(Row("e2e", f"2. end-to-end bulk ({best['images']} images, upload to last page)",
                       best["images_per_s"], "img/s",
                       note=f"upload {best['upload_s']:.2f} s, workers {best['worker_s']:.2f} s, "
                            f"total {best['seconds']:.2f} s"))
        parts = best.get("cpu_ms_per_image_by_part")
        if parts:
            out.append(Row("e2e_cpu", "2. CPU per image during end-to-end, all processes", sum(parts.values()),
                           "ms", note=", ".join(f"{k} {v:.2f}" for k, v in parts.items())))
        ip_cpu = r.get("inprocess", {}).get(str(w), {}).get("cpu_s_per_image")
        if parts and ip_cpu and r.get("machine", {}).get("cores") == w:
            # Every process shares the same cores, so at full use the ratio can
            # be at most the in-process CPU per image over the end-to-end CPU.
            p, total = ip_cpu * 1e3, sum(parts.values())
            outside = total - parts.get("worker_pool", 0.0)
            out.append(Row("e2e_ceiling_outside", "2. ceiling from the work outside the pool: "
                                                  "in-process CPU / (that + outside)", p / (p + outside), "x",
                           note=f"in-process {p:.2f} ms, outside the pool {outside:.2f} ms an image"))
            out.append(Row("e2e_ceiling_cpu", "2. ceiling at the CPU measured: in-process CPU / all CPU",
                           p / total, "x", note="below it: cores idle during the upload and the last chunk"))
        pairs = e2e.get("pairs") or []
        if len(pairs) > 1:
            med = sorted(p["ratio"] for p in pairs)[len(pairs) // 2]
            out.append(Row("e2e_ratio_paired", "2. end-to-end / in-process, median of adjacent pairs",
                           med, "x", note=", ".join(f"{p['ratio']:.2f}" for p in pairs)))
        own = (r.get("own_core") or {}).get("best")
        if own:
            out.append(Row("own_core_ratio", "2. with the worker on a core of its own, the rest on the other: "
                                             "end-to-end / in-process on that core", own["ratio"], "x",
                           note=f"{own['e2e_images_per_s']:,.0f} / {own['inprocess_images_per_s']:,.0f} img/s; "
                                f"pool {own['pool_cpu_ms_per_image']:.2f} ms an image, in-process "
                                f"{own['inprocess_cpu_ms_per_image']:.2f}"))
        rt = ratio(best["images_per_s"])
        out.append(Row("e2e_ratio", "2. end-to-end / in-process limit", rt, "x", ">= 0.85",
                       _check(rt, ">=", 0.85)))
    tut = r.get("tutorial")
    if tut:
        out.append(Row("tutorial", f"3. tutorial design, one task per image ({tut['images']} images)",
                       tut["images_per_s"], "img/s"))
        out.append(Row("tutorial_ratio", "3. tutorial / in-process limit", ratio(tut["images_per_s"]), "x"))
        if e2e:
            out.append(Row("e2e_vs_tutorial", "3. end-to-end / tutorial", e2e["best"]["images_per_s"]
                           / tut["images_per_s"], "x"))
    cpu = r.get("per_image_cpu")
    if cpu:
        out.append(Row("cpu_pipeline", "4. CPU per image: base64+decode+preprocess+inference",
                       cpu["pipeline_ms"], "ms"))
        out.append(Row("cpu_decode", "4. CPU per image: Pillow decode alone", cpu["pillow_decode_ms"], "ms"))
        out.append(Row("cpu_ratio", "4. pipeline / Pillow decode", cpu["ratio"], "x", "<= 1.2",
                       _check(cpu["ratio"], "<=", 1.2)))
        if cpu.get("model_images_per_s"):
            out.append(Row("model_speed", "4. model: features + predict_proba from 28x28 arrays, one core",
                           cpu["model_images_per_s"], "img/s", ">= 10000",
                           _check(cpu["model_images_per_s"], ">=", 10000)))
    for key, label, t50, t99 in (("predict_idle", "idle", 15, 40), ("predict_loaded", "under bulk load", 100, 300)):
        p = r.get(key)
        if p and p.get("requests"):
            out.append(Row(f"{key}_p50", f"5. /predict p50, {label} (n={p['requests']})", p["p50_ms"], "ms",
                           f"<= {t50}", _check(p["p50_ms"], "<=", t50)))
            out.append(Row(f"{key}_p99", f"5. /predict p99, {label}", p["p99_ms"], "ms",
                           f"<= {t99}", _check(p["p99_ms"], "<=", t99)))
    sc = r.get("worker_side")
    if sc:
        one, many = sc.get("1"), sc.get(str(w))
        if one:
            out.append(Row("ws_1", "6. worker-side, 1 process", one["images_per_s"], "img/s"))
        if many and w != 1:
            out.append(Row("ws_n", f"6. worker-side, {w} processes", many["images_per_s"], "img/s"))
            out.append(Row("ws_n_ratio", f"6. worker-side {w} processes / in-process limit",
                           ratio(many["images_per_s"]), "x"))
        if one and many and w != 1:
            sr = many["images_per_s"] / one["images_per_s"]
            out.append(Row("scaling", f"6. scaling, {w} processes / 1", sr, "x", ">= 1.7",
                           _check(sr, ">=", 1.7)))
            ip = r.get("inprocess", {})
            if ip.get("1") and lim:
                out.append(Row("scaling_inprocess", f"6. the machine's own scaling: in-process {w} / 1",
                               lim / ip["1"]["images_per_s"], "x",
                               note="the ceiling for the row above on this machine"))
    rss = r.get("worker_rss")
    if rss:
        g = rss["growth"] * 100
        out.append(Row("rss_growth", f"7. worker RSS growth over {rss['images']:,} images "
                                      f"(base {rss['rss_baseline_mb']:.0f} MB)", g, "%", "<= 10%",
                       MET if g <= 10 else NOT_MET))
        if rss.get("largest_process_mb"):
            out.append(Row("rss_process", "7. largest worker process RSS, model loaded",
                           rss["largest_process_mb"], "MB", "<= 300", _check(rss["largest_process_mb"], "<=", 300)))
    q = r.get("redis_queued")
    if q:
        out.append(Row("redis_per_image", f"7. Redis per queued image (PNG {q['png_mean_bytes']:.0f} B)",
                       q["bytes_per_queued_image"], "B"))
        out.append(Row("redis_per_image_ratio", "7. Redis per queued image / PNG size", q["ratio_to_png"],
                       "x", "<= 1.5", _check(q["ratio_to_png"], "<=", 1.5)))
        out.append(Row("broker_largest", f"7. largest broker message, {q['images']:,}-image job "
                                          f"({q['broker_messages']} messages)",
                       q["broker_largest_message_bytes"], "B", "<= 4096",
                       _check(q["broker_largest_message_bytes"], "<=", 4096)))
    res = r.get("redis_results")
    if res:
        out.append(Row("redis_per_result", "7. Redis per stored result", res["bytes_per_result"], "B",
                       "<= 400", _check(res["bytes_per_result"], "<=", 400)))
    if e2e:
        b = e2e["best"]
        out.append(Row("redis_ops", "8. Redis commands per image (end-to-end job)",
                       b["redis_calls_per_image"], "ops"))
        out.append(Row("redis_net", "8. Redis network bytes per image (in + out)",
                       b["redis_net_in_bytes_per_image"] + b["redis_net_out_bytes_per_image"], "B"))
    sm = r.get("scaling_model") or {}
    if sm.get("redis_cpu_us_per_image"):
        out.append(Row("redis_cpu", "8. Redis CPU per image (end-to-end job)", sm["redis_cpu_us_per_image"], "us"))
        out.append(Row("redis_capacity", "8. images/s one Redis core sustains at that cost",
                       sm["images_per_s_one_redis_core"], "img/s"))
        if sm.get("worker_cores_one_redis_core_feeds"):
            out.append(Row("redis_feeds", "8. worker cores one Redis core feeds (at the worker-side rate "
                                          f"of {sm['images_per_s_per_worker_core']:.0f} img/s per core)",
                           sm["worker_cores_one_redis_core_feeds"], ""))
    rb = r.get("redis_benchmark")
    if rb:
        if "skipped" in rb:
            out.append(Row("redis_benchmark", "8. redis-benchmark", None, "ops/s", note=rb["skipped"]))
        else:
            for label in ("unpipelined", "pipelined_16"):
                vals = rb.get(label) or {}
                if vals:
                    out.append(Row(f"redis_benchmark_{label}", f"8. redis-benchmark {label} (mean of "
                                   f"{', '.join(vals)})", sum(vals.values()) / len(vals), "ops/s"))
    return out


def contention_lines(r: dict[str, Any]) -> list[str]:
    """A note on how much of the machine other processes took during each step."""
    c = {k: v for k, v in (r.get("contention") or {}).items() if v is not None}
    if not c:
        return []
    worst = max(c, key=c.get)
    mean = sum(c.values()) / len(c)
    text = (f"Other processes used {mean:.0%} of the machine on average during the measurements "
            f"(most during {worst}: {c[worst]:.0%}).")
    n = {k: v for k, v in (r.get("contention_niced") or {}).items() if v is not None}
    if n:
        text += (f" Niced processes used {sum(n.values()) / len(n):.0%} on average "
                 f"(they mostly take cycles this run leaves idle).")
    if c[worst] > 0.1 or (n and max(n.values()) > 0.25):
        text += (" Throughput rows and ratios measured under such contention are not this "
                 "machine's capacity; rerun on a quiet machine.")
    return [text, ""]


def table(rs: list[Row]) -> str:
    w = max(len(x.what) for x in rs)
    lines = [f"{'measurement':<{w}}  {'value':>14}  {'target':>9}  result"]
    lines.append("-" * len(lines[0]) + "-" * 4)
    for x in rs:
        lines.append(f"{x.what:<{w}}  {x.shown():>14}  {x.target:>9}  {x.status}"
                     + (f"  ({x.note})" if x.note else ""))
    return "\n".join(lines)


def markdown(r: dict[str, Any], rs: list[Row]) -> str:
    m = r["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    lines = [
        "# inkq benchmark",
        "",
        f"Run {r['started']} with `{r['command']}` ({r['seconds']:.0f} s).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; "
        f"load average at start {m['loadavg_start'][0]:.2f}, at end {m['loadavg_end'][0]:.2f} "
        "(1 min; anything well above 0 means other work shared the cores).",
        "",
        f"Libraries: {libs}.",
        "",
        f"Settings: chunk size {r['config']['chunk_size']}, {r['config']['workers']} worker processes, "
        f"{r['config']['images']} images ({r['images']['png_mean_bytes']:.0f} B mean PNG), "
        f"model {r['config']['model_version']}.",
        "",
        "| measurement | value | target | result |",
        "| --- | ---: | ---: | --- |",
    ]
    for x in rs:
        note = f" ({x.note})" if x.note else ""
        lines.append(f"| {x.what}{note} | {x.shown()} | {x.target} | {x.status} |")
    met = sum(1 for x in rs if x.status == MET)
    targets = sum(1 for x in rs if x.status != INFO)
    lines += ["", f"{met} of {targets} targets met.", ""]
    lines += contention_lines(r)
    return "\n".join(lines)


def bars(r: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(label, images/s, group) for the chart: by design, and by worker count."""
    out = []
    for k, v in sorted(r.get("inprocess", {}).items(), key=lambda kv: int(kv[0])):
        out.append((f"in-process, {k} proc", v["images_per_s"], "in-process"))
    for k, v in sorted(r.get("worker_side", {}).items(), key=lambda kv: int(kv[0])):
        out.append((f"inkq worker-side, {k} proc", v["images_per_s"], "inkq"))
    if r.get("end_to_end"):
        w = r["config"]["workers"]
        out.append((f"inkq end-to-end, {w} proc", r["end_to_end"]["best"]["images_per_s"], "inkq"))
    if r.get("tutorial"):
        out.append((f"tutorial (task per image), {r['tutorial']['concurrency']} proc",
                    r["tutorial"]["images_per_s"], "tutorial"))
    return out


def chart(r: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of throughput, drawn with Pillow (no matplotlib needed)."""
    from PIL import Image, ImageDraw, ImageFont

    data = bars(r)
    if not data:
        return
    colours = {"in-process": (90, 90, 90), "inkq": (30, 110, 200), "tutorial": (220, 120, 30)}
    try:
        font = ImageFont.load_default(size=16)
        small = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1
        font = small = ImageFont.load_default()
    left, right, top, bar_h, gap = 300, 120, 60, 30, 14
    width = 1000
    height = top + len(data) * (bar_h + gap) + 50
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    m = r["machine"]
    d.text((20, 14), f"inkq throughput, images/s ({r['config']['images']} canvas PNGs; "
                     f"{m['cpu']}, {m['cores']} cores)", fill="black", font=font)
    top_v = max(v for _, v, _ in data) * 1.05
    scale = (width - left - right) / top_v
    for i, (label, v, group) in enumerate(data):
        y = top + i * (bar_h + gap)
        d.text((20, y + 7), label, fill="black", font=small)
        d.rectangle([left, y, left + max(1, int(v * scale)), y + bar_h], fill=colours[group])
        d.text((left + int(v * scale) + 8, y + 7), f"{v:,.0f}", fill="black", font=small)
    y = height - 34
    x = 20
    for group, c in colours.items():
        d.rectangle([x, y, x + 14, y + 14], fill=c)
        d.text((x + 20, y), group, fill="black", font=small)
        x += 140
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def write(r: dict[str, Any], out_dir: Path) -> list[Row]:
    """Write latest.json, latest.md and throughput.png into ``out_dir``; returns the rows."""
    rs = rows(r)
    out_dir.mkdir(parents=True, exist_ok=True)
    r = {**r, "rows": [asdict(x) for x in rs]}
    (out_dir / "latest.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (out_dir / "latest.md").write_text(markdown(r, rs))
    chart(r, out_dir / "throughput.png")
    return rs
