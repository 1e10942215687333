"""Pen drawings under the accidents of real pages, with and without the rules for them.

    python -m bench.robustness [--images 1000] [--seed 7]

Each test image is re-drawn with the round pen of :func:`worker.render.pen_ink`
as dark ink on an opaque page, then spoiled one way at a time: a stray dot (a
tap of the pen, 5 or 11 px, at least 40 px from the character), sensor noise,
JPEG compression, faint ink (light grey, 12% contrast), uneven light (a
60-level gradient, a vignette darkening the corners by 70, a photo: gradient,
noise and JPEG together), a pencil's 1 px line, a border that is not the page
(a frame drawn along it, a sheet photographed on a desk), ruled and squared
paper (grey lines under the ink; ruled paper also turned by 2 degrees), strokes
outlined by a hollow brush, a form's printed box around the character (alone,
in a row of them, or on a page scanned 1.5 degrees crooked), a client that
stamps a dot per pointer event (the pen touching down 1.5 widths apart), a
marker a tenth of the canvas wide (drawn again, thick), and a pen whose width
swells and thins along the strokes (a stylus's pressure; no rule of its own, so
both columns agree). Every version is classified through the full preprocessing
twice: as it is, and with the rules of :mod:`worker.preprocess` for these
accidents switched off (:data:`RULES`), so the table shows what they are worth.
Prints a table and writes ``bench/results/robustness.{json,md}``.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
CANVAS = 280


def _png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray, "L").save(buf, "PNG")
    return buf.getvalue()


def _jpeg(gray: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(gray, "L").convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _with_dot(page: np.ndarray, ink: np.ndarray, radius: int, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(ink > 0.5)
    for _ in range(100):
        cx, cy = (int(v) for v in rng.integers(8, CANVAS - 8, 2))
        if np.hypot(xs - cx, ys - cy).min() > 40 + radius:
            break
    im = Image.fromarray(page, "L")
    ImageDraw.Draw(im).ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=0)
    return np.asarray(im)


_X = np.arange(CANVAS, dtype=np.float32)[None, :]
_R = np.hypot(*np.mgrid[:CANVAS, :CANVAS].astype(np.float32) - CANVAS / 2) / (CANVAS / np.sqrt(2))


def versions(ink: np.ndarray, thin: np.ndarray, rng: np.random.Generator) -> dict[str, bytes]:
    """One pen drawing (ink map, 1 = ink; ``thin``: its 1 px line, bool) as every page of the table."""
    page = np.round(255 * (1 - ink)).astype(np.uint8)
    f = page.astype(np.float32)
    noisy = f + rng.normal(0, 10, f.shape)
    box_rng = rng.spawn(1)[0]  # its own draws: the rows after these keep theirs
    return {
        "clean": _png(page),
        "stray dot, 5 px": _png(_with_dot(page, ink, 2, rng)),
        "stray dot, 11 px": _png(_with_dot(page, ink, 5, rng)),
        "noise (sd 10)": _png(np.clip(noisy, 0, 255).astype(np.uint8)),
        "JPEG quality 60": _jpeg(page, 60),
        "faint ink, 12% contrast": _png(np.round(255 - 0.12 * 255 * ink).astype(np.uint8)),
        "gradient, 60 levels": _png(np.clip(f * (1 - 60 * _X / (CANVAS - 1) / 255), 0, 255).astype(np.uint8)),
        "vignette, corners -70": _png(np.clip(f - 70 * _R**2, 0, 255).astype(np.uint8)),
        "photo: gradient, noise, JPEG": _jpeg(np.clip(
            f * 0.8 + 30 - 42 * _X / (CANVAS - 1) + rng.normal(0, 4, f.shape), 0, 255).astype(np.uint8), 70),
        "pencil: a 1 px line, no anti-aliasing": _png(np.where(thin, 0, 255).astype(np.uint8)),
        "frame along the border, 4 px": _png(_framed(page, 4)),
        "sheet on a desk, 24 px around it, JPEG": _jpeg(np.pad(page, 24, constant_values=70), 85),
        "ruled paper: grey lines every 28 px": _png(_lined(page, columns=False)),
        "squared paper: grey lines every 28 px": _png(_lined(page, columns=True)),
        "ruled paper turned 2 degrees": _png(np.minimum(page, _turned_lines(2.0))),
        "outlined: the strokes' edges only, 2 px": _ink_png(_outlined(ink, 2)),
        "in a printed box, 2 px, as dark as the pen": _ink_png(_boxed(ink, box_rng, cells=False)),
        "in a row of printed boxes, cut out with its neighbours": _ink_png(_boxed(ink, box_rng, cells=True)),
        "in a printed box, the page turned 1.5 degrees": _ink_png(_turned(_boxed(ink, box_rng, cells=False), 1.5)),
    }


def _boxed(ink: np.ndarray, rng: np.random.Generator, cells: bool) -> np.ndarray:
    """The drawing in a printed box 5-30 px from it on each side (a form's
    cell), and in ``cells`` the neighbouring boxes of its row, 10 px apart."""
    ys, xs = np.nonzero(ink > 0.1)
    m = rng.integers(5, 31, 4)
    x0, y0 = max(xs.min() - m[0], 1), max(ys.min() - m[1], 1)
    x1, y1 = min(xs.max() + m[2], CANVAS - 2), min(ys.max() + m[3], CANVAS - 2)
    im = Image.new("L", (CANVAS, CANVAS), 0)
    step = x1 - x0 + 10
    for x in range(x0 - 2 * step, CANVAS, step) if cells else (x0,):
        ImageDraw.Draw(im).rectangle((x, y0, x + x1 - x0, y1), outline=255, width=2)
    return np.maximum(ink, np.asarray(im, np.float32) / 255)


def _turned(ink: np.ndarray, degrees: float) -> np.ndarray:
    """The ink map turned about the canvas's centre (drawn 4x larger), as a page scanned crooked."""
    im = Image.fromarray(np.round(255 * ink).astype(np.uint8)).resize((CANVAS * 4, CANVAS * 4), Image.BILINEAR)
    return np.asarray(im.rotate(degrees, Image.BILINEAR).reduce(4), np.float32) / 255


def _lined(page: np.ndarray, columns: bool, level: int = 160, every: int = 28, first: int = 9) -> np.ndarray:
    """The page printed with 1 px lines under the ink (rows; and columns too for squared paper)."""
    out = page.copy()
    out[first::every] = np.minimum(out[first::every], level)
    if columns:
        out[:, first::every] = np.minimum(out[:, first::every], level)
    return out


def _outlined(ink: np.ndarray, line: int) -> np.ndarray:
    """The drawing less its inside, ``line`` px of it left along the edges (a hollow brush)."""
    from scipy import ndimage

    yy, xx = np.mgrid[-line:line + 1, -line:line + 1]
    return np.clip(ink - ndimage.grey_erosion(ink, footprint=yy**2 + xx**2 <= line**2), 0, 1)


@functools.cache
def _turned_lines(degrees: float, level: int = 160, every: int = 28) -> np.ndarray:
    """A page of anti-aliased 1 px grey lines every ``every`` px, turned by
    ``degrees``: drawn 4x larger, turned, reduced."""
    big = np.full((CANVAS * 4, CANVAS * 4), 255, np.uint8)
    for k in range(4):
        big[36 + k::every * 4] = 0
    line = 1 - np.asarray(Image.fromarray(big).rotate(degrees, Image.BICUBIC, fillcolor=255).reduce(4),
                          np.float32) / 255
    return np.round(255 - (255 - level) * line).astype(np.uint8)


def _ink_png(ink: np.ndarray) -> bytes:
    """An ink map as dark ink on an opaque white page (PNG)."""
    return _png(np.round(255 * (1 - ink)).astype(np.uint8))


def _redrawn(img28: np.ndarray, seed: list[int], **style: float) -> bytes:
    """The clean page's character drawn again with the same draws, in another ``style`` of pen."""
    from worker.render import pen_ink

    rng = np.random.default_rng(seed)
    return _ink_png(pen_ink(img28, rng, float(rng.uniform(0.025, 0.07)), **style))


def _framed(page: np.ndarray, k: int) -> np.ndarray:
    out = page.copy()
    out[:k], out[-k:], out[:, :k], out[:, -k:] = 0, 0, 0, 0
    return out


#: The settings of :mod:`worker.preprocess` that the second column switches off:
#: the stray-mark, faint-ink, marker, uneven-light, frame, thin-line, dotted-stroke, page-line,
#: outline and printed-box rules.
RULES = ("STRAY_MASS", "_FAINT_FLOOR_U8", "BLOB_EXTENT_PER_WIDTH", "_SHADE_U8", "PAGE_SHARE", "THIN_STROKE",
         "DOT_PIECES", "LINE_SPAN", "HOLLOW_WIDTH", "BOX_SIDE")


def _rules_off() -> Callable[[], None]:
    """Switch the :data:`RULES` off; returns the undo."""
    from worker import preprocess as P

    saved = [getattr(P, n) for n in RULES]
    # Every piece joins; faint ink is not ink; every mark is held to the taps'
    # rule; no page reads as shaded; the border's colour is always the page's;
    # no stroke is too thin to average down; no dots are joined; no row or
    # column, level or turned, is a page line; no outline is filled; no box
    # is printed.
    off = (0.0, P._FLOOR_U8, P.MIN_EXTENT_PER_WIDTH, 256, 1.0, 0.0, 0, 2.0, 0.0, 0)
    for n, v in zip(RULES, off):
        setattr(P, n, v)

    def undo() -> None:
        for n, v in zip(RULES, saved):
            setattr(P, n, v)

    return undo


def run(images: int, seed: int) -> dict:
    from inkq.errors import ItemError
    from inkq.settings import Settings
    from worker.emnist import load_split
    from worker.model import load_model
    from worker.preprocess import preprocess
    from worker.render import pen_ink

    from .data import DEFAULT_EMNIST_DIR

    t0 = time.time()
    s = Settings.from_env()
    model = load_model(s.model_path, s.card_path)
    X, y = load_split(DEFAULT_EMNIST_DIR, "test")
    idx = np.random.default_rng(seed).choice(len(X), min(images, len(X)), replace=False)
    pages: dict[str, list[bytes]] = {}
    for i in idx:
        rng = np.random.default_rng([seed, int(i)])
        ink = pen_ink(X[i], rng, float(rng.uniform(0.025, 0.07)))
        thin = pen_ink(X[i], np.random.default_rng([seed, int(i)]), 1 / CANVAS) >= 0.5
        for name, data in versions(ink, thin, rng).items():
            pages.setdefault(name, []).append(data)
        pages.setdefault("dotted: the pen touching down 1.5 widths apart", []).append(
            _redrawn(X[i], [seed, int(i)], dots=1.5))
        pages.setdefault("marker, a tenth of the canvas wide", []).append(_ink_png(pen_ink(X[i], rng, 0.10)))
        for pressure in (0.3, 0.6):
            pages.setdefault(f"pressure: the pen's width varying {pressure:.0%} (sd) along the strokes", []).append(
                _redrawn(X[i], [seed, int(i)], pressure=pressure))

    def accuracy(datas: list[bytes]) -> float:
        right = 0
        for data, label in zip(datas, y[idx]):
            try:
                right += int(model.predict_proba(preprocess(data)[None])[0].argmax() == label)
            except ItemError:
                pass  # refused: counts as wrong
        return right / len(datas)

    rows = {name: {"with_rules": accuracy(datas)} for name, datas in pages.items()}
    undo = _rules_off()
    try:
        for name, datas in pages.items():
            rows[name]["without_rules"] = accuracy(datas)
    finally:
        undo()
    return {"images": len(idx), "seed": seed, "model_version": model.version, "rows": rows,
            "seconds": time.time() - t0}


def markdown(r: dict) -> str:
    lines = [f"Pen drawings of {r['images']} test images as dark ink on opaque pages (seed {r['seed']}, "
             f"model {r['model_version']}, {r['seconds']:.0f} s).", "",
             "| page | accuracy | without the rules for it |", "| --- | ---: | ---: |"]
    for name, v in r["rows"].items():
        lines.append(f"| {name} | {100 * v['with_rules']:.1f}% | {100 * v['without_rules']:.1f}% |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.robustness", description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=HERE / "results")
    a = p.parse_args(argv)
    r = run(a.images, a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "robustness.json").write_text(json.dumps(r, indent=2) + "\n")
    md = markdown(r)
    (a.out / "robustness.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
