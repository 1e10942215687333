"""Render EMNIST 28x28 images as browser-style canvas PNGs (tests, eval, benchmarks).

Four renderers, all deterministic given the ``numpy.random.Generator``:

``render_canvas(img28, rng, style)``
    The scanned glyph, upsampled smoothly and re-thresholded to a thinner or
    thicker stroke, placed at 30-90% of a 280x280 canvas anywhere on it, in one
    of the colour styles of :data:`STYLES`.

``render_pen(img28, rng, width_frac)``
    The way people draw on a canvas: the glyph is thinned to its skeleton and
    re-traced with a round pen of even width (``width_frac`` of the canvas side),
    anti-aliased with sharp edges (ink = clip(r + 0.5 - distance to the
    skeleton, 0, 1)), dark ink on a transparent background. Training shows the
    model drawings made this way (``worker.train.pen_normalise``).

``render_marker(img28, rng)``
    The same tracing with other settings (skeleton, canvas size, pen widths,
    grey ink on opaque white), which training never sees: the check that the
    model learnt pen drawings rather than one set of renderer settings.

``render_stray(img28, rng)``
    A pen drawing with a stray mark beside it: a tap of the pen somewhere on
    the canvas away from the character, which preprocessing must leave out.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

#: Side of the rendered canvas (px).
CANVAS = 280

#: Colour styles of :func:`render_canvas` ("random" picks one of these).
STYLES = ("transparent", "white", "dark", "colour")


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _transparent_png(ink: np.ndarray) -> bytes:
    """A CANVAS x CANVAS ink map as dark ink on a transparent canvas (alpha = ink)."""
    out = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    out[..., 3] = np.round(ink * 255)
    return _png(out, "RGBA")


def _as_float(img28: np.ndarray) -> np.ndarray:
    a = np.asarray(img28, dtype=np.float32)
    if a.shape != (28, 28):
        raise ValueError(f"expected a (28, 28) image, got {a.shape}")
    if a.max() > 1.0:
        a = a / 255.0
    return a


def _glyph(a: np.ndarray) -> np.ndarray:
    """The glyph cropped to its ink (intensity > 0.1)."""
    rows = np.flatnonzero((a > 0.1).any(1))
    cols = np.flatnonzero((a > 0.1).any(0))
    if len(rows) == 0:
        return a
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _layout(shape: tuple[int, int], rng: np.random.Generator, canvas: int = CANVAS,
            size: tuple[float, float] = (0.30, 0.90)) -> tuple[int, int, int, int]:
    """Size (w, h) of the glyph on the canvas and its top-left corner (x, y)."""
    gh, gw = shape
    frac = rng.uniform(*size)
    long_px = frac * canvas
    s = long_px / max(gh, gw)
    w, h = max(1, round(gw * s)), max(1, round(gh * s))
    x = int(rng.integers(0, canvas - w + 1))
    y = int(rng.integers(0, canvas - h + 1))
    return w, h, x, y


def _colourise(ink: np.ndarray, rng: np.random.Generator, style: str) -> bytes:
    """Ink map (CANVAS x CANVAS, [0, 1]) -> PNG bytes in the given colour style."""
    if style == "random":
        style = STYLES[int(rng.integers(len(STYLES)))]
    ink = ink[..., None]
    if style == "transparent":
        rgb = rng.integers(0, 60, size=3)
        out = np.empty((CANVAS, CANVAS, 4), np.uint8)
        out[..., :3] = rgb
        out[..., 3:] = np.round(ink * 255)
        return _png(out, "RGBA")
    if style == "white":
        fg, bg = rng.integers(0, 70, size=3), rng.integers(225, 256, size=3)
    elif style == "dark":
        fg, bg = rng.integers(200, 256, size=3), rng.integers(0, 50, size=3)
    elif style == "colour":
        hues = np.array([[220, 30, 30], [30, 90, 220], [20, 150, 60], [150, 40, 170], [240, 140, 0]])
        fg = hues[int(rng.integers(len(hues)))]
        bg = np.array([255, 255, 255]) if rng.random() < 0.5 else rng.integers(0, 40, size=3)
    else:
        raise ValueError(f"unknown style {style!r}; expected 'random' or one of {STYLES}")
    out = bg * (1.0 - ink) + fg * ink
    return _png(np.round(out).astype(np.uint8), "RGB")


def render_canvas(img28: np.ndarray, rng: np.random.Generator, style: str = "random") -> bytes:
    """An upright EMNIST image -> a 280x280 canvas PNG as a browser would send it.

    The glyph (cropped to its ink) is scaled to 30-90% of the canvas, placed at a
    random position, its strokes made thinner or thicker (smooth upsampling and
    a random threshold), and drawn in ``style``: ``"transparent"`` (dark ink on
    a transparent background, the ``toDataURL()`` default), ``"white"``,
    ``"dark"`` (light ink on dark), ``"colour"`` or ``"random"``.
    """
    a = _glyph(_as_float(img28))
    w, h, x, y = _layout(a.shape, rng)
    big = Image.fromarray(np.round(a * 255).astype(np.uint8), "L").resize((w, h), Image.BICUBIC)
    b = np.asarray(big, dtype=np.float32) / 255.0
    # Threshold level: low -> thick strokes, high -> thin; a ramp keeps anti-aliasing.
    t = rng.uniform(0.15, 0.7)
    ramp = 0.15
    b = np.clip((b - t) / ramp + 0.5, 0.0, 1.0)
    ink = np.zeros((CANVAS, CANVAS), np.float32)
    ink[y : y + h, x : x + w] = b
    return _colourise(ink, rng, style)


# --------------------------------------------------------------------------- pen


def _thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a boolean image (vectorised numpy)."""
    img = np.pad(mask.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p = img
            P2, P3, P4 = p[:-2, 1:-1], p[:-2, 2:], p[1:-1, 2:]
            P5, P6, P7 = p[2:, 2:], p[2:, 1:-1], p[2:, :-2]
            P8, P9 = p[1:-1, :-2], p[:-2, :-2]
            nb = [P2, P3, P4, P5, P6, P7, P8, P9]
            B = sum(n.astype(np.int16) for n in nb)
            seq = nb + [P2]
            A = sum(((seq[i] == 0) & (seq[i + 1] == 1)).astype(np.int16) for i in range(8))
            if step == 0:
                c = (P2 * P4 * P6 == 0) & (P4 * P6 * P8 == 0)
            else:
                c = (P2 * P4 * P8 == 0) & (P2 * P6 * P8 == 0)
            rem = (p[1:-1, 1:-1] == 1) & (B >= 2) & (B <= 6) & (A == 1) & c
            if rem.any():
                img[1:-1, 1:-1][rem] = 0
                changed = True
        if not changed:
            break
    return img[1:-1, 1:-1].astype(bool)


#: Scale of the pressure field of :func:`_trace` (Gaussian sigma, a fraction of the canvas).
PRESSURE_SCALE = 0.09


def _trace(img28: np.ndarray, rng: np.random.Generator, width_frac: float, *, canvas: int = CANVAS,
           size: tuple[float, float] = (0.30, 0.90), up: int = 4, resample: int = Image.BICUBIC,
           level: int = 128, dots: float = 0.0, pressure: float = 0.0) -> np.ndarray:
    """The glyph's skeleton re-traced with a round pen: an ink map (canvas x canvas).

    The glyph is upsampled ``up`` times (``resample``), binarised at ``level``
    and thinned; the skeleton is placed at ``size`` of the canvas and drawn
    with a pen ``width_frac`` of the canvas wide. With ``dots`` > 0 the pen
    only touches down at points at least ``dots`` pen widths apart (a client
    stamping a disc per pointer event, the pen moving fast). With ``pressure``
    > 0 the pen's width swells and thins along the strokes, as a stylus's or a
    speed-sensitive brush's does: it follows a smooth random field over the
    canvas (features about PRESSURE_SCALE of it), ``pressure`` standard
    deviations of the width either way, kept within 0.3 to 2 times
    ``width_frac``; the field is drawn from ``rng`` after everything else, so
    the character's layout is the same with or without it.
    """
    a = _glyph(_as_float(img28))
    radius = width_frac * canvas / 2.0
    # Leave room for the pen: the skeleton spans the glyph minus the stroke.
    w, h, x, y = _layout(a.shape, rng, canvas, size)
    gh, gw = a.shape
    big = Image.fromarray(np.round(a * 255).astype(np.uint8), "L").resize((gw * up, gh * up), resample)
    mask = np.asarray(big) >= level
    if not mask.any():
        mask = np.asarray(big) >= np.asarray(big).max() / 2
    skel = _thin(mask)
    sy, sx = np.nonzero(skel)
    # Skeleton points -> canvas coordinates (pixel centres), shrunk so the pen fits.
    inner_w, inner_h = max(1.0, w - 2 * radius), max(1.0, h - 2 * radius)
    k = min(inner_w / (gw * up), inner_h / (gh * up))
    ox = x + (w - gw * up * k) / 2.0
    oy = y + (h - gh * up * k) / 2.0
    px = ox + (sx + 0.5) * k
    py = oy + (sy + 0.5) * k
    # Rasterise the skeleton at 1 px on the canvas, connecting neighbouring
    # skeleton pixels so that upscaling leaves no gaps.
    free = np.ones((canvas, canvas), bool)
    idx = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(sy, sx))}
    segs = [(i, idx[(r + dr, c + dc)]) for (r, c), i in idx.items()
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)) if (r + dr, c + dc) in idx]
    pts_x, pts_y = [px], [py]
    for i, j in segs:
        n = int(np.ceil(max(abs(px[j] - px[i]), abs(py[j] - py[i])))) + 1
        tt = np.linspace(0.0, 1.0, n + 1)
        pts_x.append(px[i] + (px[j] - px[i]) * tt)
        pts_y.append(py[i] + (py[j] - py[i]) * tt)
    allx = np.clip(np.round(np.concatenate(pts_x) - 0.5).astype(int), 0, canvas - 1)
    ally = np.clip(np.round(np.concatenate(pts_y) - 0.5).astype(int), 0, canvas - 1)
    if dots > 0:
        allx, ally = _spaced(allx, ally, dots * 2 * radius)
    free[ally, allx] = False
    if pressure <= 0:
        dist = ndimage.distance_transform_edt(free)
        return np.clip(radius + 0.5 - dist, 0.0, 1.0).astype(np.float32)
    dist, (near_y, near_x) = ndimage.distance_transform_edt(free, return_indices=True)
    field = ndimage.gaussian_filter(rng.standard_normal((canvas, canvas)), PRESSURE_SCALE * canvas)
    field = (field - field.mean()) / (field.std() + 1e-12)
    radii = radius * np.clip(1.0 + pressure * field, 0.3, 2.0)
    return np.clip(radii[near_y, near_x] + 0.5 - dist, 0.0, 1.0).astype(np.float32)


def _spaced(x: np.ndarray, y: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """The points (in order) that lie at least ``step`` from every point kept before them."""
    kx: list[int] = []
    ky: list[int] = []
    for a, b in zip(x.tolist(), y.tolist()):
        if all((a - c) ** 2 + (b - d) ** 2 >= step * step for c, d in zip(kx, ky)):
            kx.append(a)
            ky.append(b)
    return np.array(kx), np.array(ky)


def pen_ink(img28: np.ndarray, rng: np.random.Generator, width_frac: float, dots: float = 0.0,
            pressure: float = 0.0, *, up: int = 4, resample: int = Image.BICUBIC, level: int = 128) -> np.ndarray:
    """The pen drawing of :func:`render_pen` as an ink map (CANVAS x CANVAS float32);
    ``dots``, ``pressure`` and the skeleton's ``up``, ``resample`` and ``level``: see :func:`_trace`."""
    return _trace(img28, rng, width_frac, dots=dots, pressure=pressure, up=up, resample=resample, level=level)


def render_pen(img28: np.ndarray, rng: np.random.Generator, width_frac: float | None = None) -> bytes:
    """An upright EMNIST image re-drawn with a round pen, as a 280x280 canvas PNG.

    ``width_frac`` is the pen's width as a fraction of the canvas side (people
    draw with 0.025 to 0.07); ``None`` draws it from that range. Dark ink on a
    transparent background. Deterministic given ``rng``.
    """
    if width_frac is None:
        width_frac = float(rng.uniform(0.025, 0.07))
    ink = pen_ink(img28, rng, width_frac)
    return _transparent_png(ink)


#: Side of :func:`render_marker`'s canvas (px).
MARKER_CANVAS = 360


def render_marker(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """Pen drawings with other settings than :func:`render_pen`'s, on purpose.

    The model trains on :func:`render_pen`'s drawings; these check that what it
    learnt carries over to pen drawings it has not seen: another skeleton
    (3x bilinear upsampling, binarised at 35%), a 360 px canvas, the glyph at
    40-80% of it, a 3-6% pen, and grey ink on an opaque white background.
    """
    ink = _trace(img28, rng, float(rng.uniform(0.03, 0.06)), canvas=MARKER_CANVAS, size=(0.40, 0.80),
                 up=3, resample=Image.BILINEAR, level=89)
    grey = np.round(255 - 230 * ink).astype(np.uint8)
    return _png(np.repeat(grey[..., None], 3, axis=2), "RGB")


#: Nearest distance (canvas px) of :func:`render_stray`'s mark from the character's ink.
STRAY_DISTANCE = 40


def render_stray(img28: np.ndarray, rng: np.random.Generator) -> bytes:
    """A :func:`render_pen` drawing plus one dot of 0.5-1.5 pen widths, its
    edge at least :data:`STRAY_DISTANCE` px from the character's ink, anywhere
    else on the canvas (no dot where the character leaves no such room)."""
    width_frac = float(rng.uniform(0.025, 0.07))
    ink = pen_ink(img28, rng, width_frac)
    r = 0.5 * width_frac * CANVAS * float(rng.uniform(0.5, 1.5))
    room = ndimage.distance_transform_edt(ink < 0.5)
    edge = int(np.ceil(r)) + 1
    room[:edge], room[-edge:], room[:, :edge], room[:, -edge:] = 0, 0, 0, 0
    ys, xs = np.nonzero(room >= STRAY_DISTANCE + r)
    if len(ys):
        i = int(rng.integers(len(ys)))
        yy, xx = np.mgrid[:CANVAS, :CANVAS]
        dot = np.clip(r + 0.5 - np.hypot(yy - ys[i], xx - xs[i]), 0.0, 1.0)
        ink = np.maximum(ink, dot)
    return _transparent_png(ink)
