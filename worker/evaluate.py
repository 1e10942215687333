"""Evaluate a model on an EMNIST test split: raw images, canvas renderings, pen drawings.

:func:`evaluate` returns a JSON-able dict of figures (top-1, top-5, per-class
recall, worst classes) for

- ``raw``: the test images as stored (upright, /255);
- ``canvas``: each test image rendered as a 280x280 browser-style canvas PNG
  (:func:`worker.render.render_canvas`, random size/position/stroke/colour
  style) and brought back through the full preprocessing
  (:func:`worker.preprocess.preprocess`);
- ``pen``: each test image re-drawn with a round pen of even width 2.5-7% of
  the canvas (:func:`worker.render.render_pen`), then preprocessed;
- ``marker``: pen drawings with other settings, which training never sees
  (:func:`worker.render.render_marker`: another skeleton, a 360 px opaque
  white canvas, grey ink, 3-6% pens);
- ``stray``: pen drawings with a stray dot away from the character, a tap of
  the pen that preprocessing must leave out (:func:`worker.render.render_stray`).

A rendering that preprocessing refuses (e.g. as blank) counts as wrong.
``delta_vs_raw`` is the accuracy lost in points. Optionally writes a
confusion-matrix heatmap PNG (raw images) with Pillow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from inkq.errors import ItemError
from worker.emnist import load_split
from worker.model import card_path_for, command_line, load_model, write_card
from worker.preprocess import PREPROCESS_VERSION, preprocess
from worker.render import render_canvas, render_marker, render_pen, render_stray

#: Seed of the renderings, so every evaluation sees the same canvases.
EVAL_SEED = 20261127

#: The rendered evaluations, in report order: name, renderer, seed offset.
RENDERINGS = (("canvas", render_canvas, 1), ("pen", render_pen, 2), ("marker", render_marker, 3),
              ("stray", render_stray, 4))


def _subset(X: np.ndarray, y: np.ndarray, limit: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if limit is None or limit >= len(X):
        return X, y
    idx = np.sort(np.random.default_rng(seed).choice(len(X), size=limit, replace=False))
    return X[idx], y[idx]


def wilson_interval(right: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (``z`` 1.96) Wilson score interval of a rate of ``right`` in ``n``.

    A test set is a sample: 88.3% on 9,400 images means 87.6-88.9%, and a
    class's recall on 200 images is known to about 7 points either way, so
    figures that close are not told apart by it.
    """
    if n <= 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def scores(proba: np.ndarray, y: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict:
    """top-1 (with its 95% interval), top-5, per-class recall and the five
    worst classes of a prediction."""
    k = len(labels)
    pred = proba.argmax(1)
    top5 = np.argsort(-proba, axis=1)[:, :5]
    correct = pred == y
    recall = {}
    for c in range(k):
        m = y == c
        if m.any():
            recall[labels[c]] = round(float(correct[m].mean()), 4)
    worst = sorted(recall.items(), key=lambda kv: kv[1])[:5]
    return {
        "n": int(len(y)),
        "top1": round(float(correct.mean()), 4),
        "top1_95": [round(v, 4) for v in wilson_interval(int(correct.sum()), len(y))],
        "top5": round(float((top5 == y[:, None]).any(1).mean()), 4),
        "min_class_recall": round(min(recall.values()), 4) if recall else None,
        "worst_classes": [[c, r] for c, r in worst],
        "per_class_recall": recall,
    }


def confusion_matrix(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def write_confusion_png(cm: np.ndarray, labels: tuple[str, ...] | list[str], path: Path, cell: int = 14) -> None:
    """A heatmap of row-normalised confusion (true rows, predicted columns) with labels."""
    k = len(labels)
    rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    margin = 24
    size = margin + k * cell + 4
    img = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(img)
    for i in range(k):
        d.text((4, margin + i * cell + 1), labels[i], fill="black")
        d.text((margin + i * cell + 3, 6), labels[i], fill="black")
        for j in range(k):
            v = rows[i, j]
            if i == j:
                col = (int(255 * (1 - v)), int(255 - 100 * v), int(255 * (1 - v)))  # green diagonal
            else:
                t = min(1.0, v * 4)  # errors: red, saturating at 25%
                col = (255, int(255 * (1 - t)), int(255 * (1 - t)))
            x0, y0 = margin + j * cell, margin + i * cell
            d.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=col, outline=(230, 230, 230))
    d.text((margin, size - 12), "rows: true, columns: predicted", fill="gray")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _predict_rendered(model, X: np.ndarray, render: Callable[[np.ndarray, np.random.Generator], bytes],
                      seed: int, batch: int = 512) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    k = model.n_classes
    proba = np.zeros((len(X), k), np.float32)
    failed = 0
    imgs, idx = [], []

    def flush():
        if imgs:
            proba[idx] = model.predict_proba(np.stack(imgs))
            imgs.clear()
            idx.clear()

    for i, x in enumerate(X):
        try:
            imgs.append(preprocess(render(x, rng)))
            idx.append(i)
        except ItemError:
            failed += 1  # counts as wrong: its row stays all zeros
        if len(imgs) >= batch:
            flush()
    flush()
    return proba, failed


def evaluate(
    model,
    data_dir: str | Path,
    prefix: str = "emnist-47",
    *,
    canvas: bool = True,
    pen: bool = True,
    marker: bool = True,
    stray: bool = True,
    limit: int | None = None,
    confusion_png: str | Path | None = None,
    progress: Callable[[str], None] | None = print,
    seed: int = EVAL_SEED,
) -> dict:
    """Figures of ``model`` (a :class:`worker.model.Model`) on the test split.

    ``data_dir``/``prefix`` locate ``<prefix>-test-*`` files; ``limit`` evaluates
    a random subset of that many test images (None: all). ``canvas``/``pen``/
    ``marker``/``stray`` switch the rendered evaluations on; ``confusion_png`` writes the raw-image
    confusion matrix there. Returns ``{"raw": {...}, "canvas": {...}, "pen":
    {...}, ...}`` with top1/top5/per-class recall and each rendering's
    ``delta_vs_raw`` (points lost).
    """
    say = progress or (lambda _m: None)
    X, y = load_split(data_dir, "test", prefix)
    X, y = _subset(X, y, limit, seed)
    labels = tuple(model.labels)
    out: dict = {"test_images": int(len(y)), "prefix": prefix, "render_seed": seed,
                 "preprocess_version": PREPROCESS_VERSION, "model_version": model.version}
    t0 = time.perf_counter()
    proba = model.predict_proba(X.astype(np.float32) / 255.0)
    out["raw"] = scores(proba, y, labels)
    say(f"eval raw: top-1 {out['raw']['top1']:.4f} (95%: {out['raw']['top1_95'][0]:.4f}-"
        f"{out['raw']['top1_95'][1]:.4f}) top-5 {out['raw']['top5']:.4f} "
        f"worst {out['raw']['worst_classes']} ({time.perf_counter() - t0:.1f}s)")
    if confusion_png is not None:
        write_confusion_png(confusion_matrix(y, proba.argmax(1), len(labels)), labels, Path(confusion_png))
        out["confusion_png"] = str(confusion_png)
    wanted = {"canvas": canvas, "pen": pen, "marker": marker, "stray": stray}
    for name, render, offset in RENDERINGS:
        if not wanted[name]:
            continue
        t0 = time.perf_counter()
        p, failed = _predict_rendered(model, X, render, seed + offset)
        r = scores(p, y, labels)
        r["refused"] = failed
        r["delta_vs_raw"] = round(100 * (out["raw"]["top1"] - r["top1"]), 2)
        out[name] = r
        say(f"eval {name}: top-1 {r['top1']:.4f} top-5 {r['top5']:.4f} "
            f"(-{r['delta_vs_raw']:.2f} pts vs raw, {failed} refused) worst {r['worst_classes']} "
            f"({time.perf_counter() - t0:.1f}s)")
    return out


def update_card_eval(card_path: str | Path, figures: dict) -> dict:
    """Write evaluation figures into an existing model card (its ``eval`` key)."""
    import json

    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    card["eval"] = figures
    write_card(card_path, card)
    return card


def format_report(fig: dict) -> str:
    """The figures as a text table: top-1/top-5 per kind, then per-class recall."""
    kinds = [k for k in ("raw", *(name for name, _, _ in RENDERINGS)) if k in fig]
    lines = [f"{'':18s}" + "".join(f"{k:>10s}" for k in kinds)]
    for metric in ("top1", "top5", "min_class_recall"):
        lines.append(f"{metric:18s}" + "".join(f"{fig[k][metric]:>10.4f}" for k in kinds))
    lines.append(f"{'top1 95% (%)':18s}" + "".join(
        f"{'%.1f-%.1f' % tuple(100 * v for v in fig[k]['top1_95']) if 'top1_95' in fig[k] else '':>10s}"
        for k in kinds))
    lines.append(f"{'delta (points)':18s}" + "".join(f"{fig[k].get('delta_vs_raw', 0.0):>10.2f}" for k in kinds))
    lines.append("per-class recall:")
    for c in fig["raw"]["per_class_recall"]:
        lines.append(f"  {c:16s}" + "".join(f"{fig[k]['per_class_recall'].get(c, 0.0):>10.3f}" for k in kinds))
    return "\n".join(lines)


def main(
    model_path: str | Path,
    data_dir: str | Path,
    *,
    prefix: str = "emnist-47",
    limit: int | None = None,
    confusion_png: str | Path | None = None,
    update_card: bool = False,
    canvas: bool = True,
    pen: bool = True,
    marker: bool = True,
    stray: bool = True,
    echo: Callable[[str], None] = print,
    command: str | None = None,
) -> dict:
    """``inkq eval``: load (verified) the model at ``model_path``, evaluate it,
    print the figures and per-class recall, optionally write them into its card
    with ``command`` (default: this process's command line) and the time taken."""
    t0 = time.perf_counter()
    model = load_model(Path(model_path))
    fig = evaluate(model, data_dir, prefix, canvas=canvas, pen=pen, marker=marker, stray=stray,
                   limit=limit, confusion_png=confusion_png, progress=echo)
    fig["command"] = command or command_line()
    fig["time_s"] = round(time.perf_counter() - t0, 1)
    echo(format_report(fig))
    if update_card:
        update_card_eval(card_path_for(Path(model_path)), fig)
        echo(f"figures written into {card_path_for(Path(model_path))}")
    return fig
