"""``python -m bench [--quick] [--images N] [--workers N] [--out bench/results]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import report
from .run import Config, run


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller counts: about a minute")
    p.add_argument("--images", type=int, help="distinct images per throughput run (default 3000; quick 1000)")
    p.add_argument("--workers", type=int, help="worker processes (default: CPU count)")
    p.add_argument("--big-job", type=int, help="images in the bulk-load job (default 10000; quick 2000)")
    p.add_argument("--memory-images", type=int, help="images for the RSS run (default 100000; quick 10000)")
    p.add_argument("--predicts", type=int, help="sequential /predict requests at idle (default 200)")
    p.add_argument("--chunk-size", type=int, help="INKQ_CHUNK_SIZE for this run (default: the setting)")
    p.add_argument("--model", type=Path, help="model artifact (default: INKQ_MODEL_PATH / artifacts/)")
    p.add_argument("--no-redis-benchmark", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = p.parse_args(argv)
    overrides = {k: v for k, v in {
        "images": a.images, "workers": a.workers, "big_job": a.big_job,
        "memory_images": a.memory_images, "predicts": a.predicts, "chunk_size": a.chunk_size,
        "model_path": a.model}.items() if v is not None}
    overrides["redis_benchmark"] = not a.no_redis_benchmark
    overrides["command"] = "python -m bench " + " ".join(argv)
    cfg = Config.quick(**overrides) if a.quick else Config(**overrides)
    from inkq.errors import ModelError

    try:
        results = run(cfg)
    except ModelError as exc:
        print(f"python -m bench: {exc}\n(train one with `make train`, or pass --model PATH)", file=sys.stderr)
        return 2
    rows = report.write(results, a.out)
    print(report.table(rows))
    for line in report.contention_lines(results):
        if line:
            print("\n" + line)
    print(f"\nwrote {a.out / 'latest.json'}, latest.md, throughput.png ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
