"""Load test: concurrent bulk jobs, single predictions and polls against a real stack.

    python -m bench.load [--seconds 60] [--users 12] [--workers 2]

Starts its own stack (embedded Redis, N workers, the API) on loopback, runs
Locust headless for a bounded time, then reports requests, errors, items lost
and latency percentiles, and writes them to ``bench/results/load.{json,md}``.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .data import load_images
from .stack import Stack

HERE = Path(__file__).resolve().parent


def run(seconds: int, users: int, workers: int, out_dir: Path) -> dict:
    images = load_images(300)
    work = Path(tempfile.mkdtemp(prefix="inkq-load-"))
    images_file = work / "images.json"
    images_file.write_text(json.dumps({"images": [base64.b64encode(p).decode() for p in images.pngs]}))
    with Stack() as stack:
        stack.start_workers(workers)
        env = {**os.environ, "INKQ_LOAD_IMAGES": str(images_file), "INKQ_LOAD_TALLY": str(work / "tally.json")}
        cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
               "-u", str(users), "-r", str(max(1, users // 4)), "-t", f"{seconds}s",
               "--host", stack.url, "--csv", str(work / "stats"), "--only-summary",
               "--stop-timeout", "30", "--exit-code-on-error", "0"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
    tally = json.loads((work / "tally.json").read_text())
    rows = list(csv.DictReader(open(work / "stats_stats.csv")))
    report = {"seconds": seconds, "users": users, "workers": workers, "tally": tally, "requests": []}
    for row in rows:
        report["requests"].append({
            "name": row["Name"], "requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]), "p99_ms": float(row["99%"]),
            "rps": round(float(row["Requests/s"]), 1)})
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "load.json").write_text(json.dumps(report, indent=2))
    (out_dir / "load.md").write_text(markdown(report))
    return report


def markdown(report: dict) -> str:
    t = report["tally"]
    lines = [f"Load test: {report['users']} users for {report['seconds']} s, {report['workers']} worker processes "
             f"(`python -m bench.load --seconds {report['seconds']} --users {report['users']}`).", "",
             "| request | count | failures | p50 ms | p95 ms | p99 ms | req/s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in report["requests"]:
        lines.append(f"| {r['name']} | {r['requests']} | {r['failures']} | {r['p50_ms']:.0f} | "
                     f"{r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['rps']} |")
    lines += ["", f"Bulk jobs: {t['jobs']}, images submitted {t['images_submitted']}, returned "
                  f"{t['images_returned']}, **lost {t['items_lost']}**, unfinished jobs {t['jobs_unfinished']}; "
                  f"single predictions answered: {t['predictions']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--users", type=int, default=12)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    report = run(args.seconds, args.users, args.workers, args.out)
    print(markdown(report))
    total = next((r for r in report["requests"] if r["name"] == "Aggregated"), None)
    if report["tally"]["items_lost"] or (total and total["failures"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
