"""The canvas and pen renderers used by tests, `inkq eval` and benchmarks."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from worker.emnist import load_split
from worker.render import (CANVAS, MARKER_CANVAS, STRAY_DISTANCE, STYLES, pen_ink, render_canvas, render_marker,
                           render_pen, render_stray)




@pytest.fixture(scope="module")
def images(emnist_dir):
    X, y = load_split(emnist_dir, "test")
    return X[:40]


def _open(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG" and im.size == (CANVAS, CANVAS)
    return im


def test_deterministic(images):
    for fn in (render_canvas, render_pen, render_marker, render_stray):
        a = fn(images[0], np.random.default_rng(5))
        b = fn(images[0], np.random.default_rng(5))
        c = fn(images[0], np.random.default_rng(6))
        assert a == b and a != c


@pytest.mark.parametrize("style,mode", [("transparent", "RGBA"), ("white", "RGB"), ("dark", "RGB"), ("colour", "RGB")])
def test_styles(images, style, mode):
    im = _open(render_canvas(images[1], np.random.default_rng(0), style))
    assert im.mode == mode
    a = np.asarray(im.convert("RGBA"), np.float32)
    if style == "transparent":
        assert a[0, 0, 3] == 0 and a[..., 3].max() == 255
    elif style == "white":
        assert a[0, 0, :3].min() > 200 and a[..., :3].min() < 80
    elif style == "dark":
        assert a[0, 0, :3].max() < 60 and a[..., :3].max() > 190


def test_random_style_covers_all(images):
    rng = np.random.default_rng(0)
    modes = {_open(render_canvas(images[i % 40], rng)).mode for i in range(40)}
    assert modes == {"RGBA", "RGB"}
    assert len(STYLES) == 4
    with pytest.raises(ValueError):
        render_canvas(images[0], rng, "sepia")


def _extent(ink: np.ndarray) -> float:
    rows = np.flatnonzero((ink > 0.1).any(1))
    cols = np.flatnonzero((ink > 0.1).any(0))
    return max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / CANVAS


def test_canvas_size_and_position_vary(images):
    rng = np.random.default_rng(1)
    ext, cx = [], []
    for x in images:
        a = np.asarray(_open(render_canvas(x, rng, "transparent")))[..., 3] / 255.0
        ext.append(_extent(a))
        cx.append(np.nonzero(a > 0.5)[1].mean())
    assert 0.28 <= min(ext) and max(ext) <= 0.92
    assert max(ext) - min(ext) > 0.3
    assert np.std(cx) > 20  # off-centre


@pytest.mark.parametrize("width_frac", [0.025, 0.045, 0.07])
def test_pen_has_even_width_and_sharp_edges(images, width_frac):
    ink = pen_ink(images[2], np.random.default_rng(0), width_frac)
    # 2 * area / perimeter of an even stroke is its width (a little less at its ends)
    gy, gx = np.diff(ink, axis=0)[:, :-1], np.diff(ink, axis=1)[:-1, :]
    w = 2 * ink.sum() / np.sqrt(gx**2 + gy**2).sum() / CANVAS
    assert 0.75 * width_frac < w < 1.1 * width_frac
    # sharp: anti-aliased edges are at most ~1 px, so few pixels are in between
    partial = ((ink > 0.05) & (ink < 0.95)).sum() / (ink > 0.05).sum()
    assert partial < 0.35
    assert 0.28 <= _extent(ink) <= 0.92


def test_pen_png_is_transparent_dark_ink(images):
    a = np.asarray(_open(render_pen(images[3], np.random.default_rng(0))))
    assert a.shape == (CANVAS, CANVAS, 4)
    assert a[..., :3].max() == 0 and a[..., 3].max() == 255 and a[0, 0, 3] == 0


def _median_correlation(images, render) -> float:
    """Median correlation at 28x28 between glyphs and their preprocessed renderings."""
    from worker.preprocess import preprocess

    corr = []
    for x in images[:20]:
        out = preprocess(render(x))
        corr.append(np.corrcoef(out.ravel(), x.ravel().astype(np.float32))[0, 1])
    return float(np.median(corr))


def test_pen_keeps_the_character(images):
    """The pen retrace stays close to the glyph."""
    rng = np.random.default_rng(0)
    assert _median_correlation(images, lambda x: render_pen(x, rng, 0.04)) > 0.7


def test_marker_is_grey_ink_on_opaque_white_and_keeps_the_character(images):
    im = Image.open(io.BytesIO(render_marker(images[3], np.random.default_rng(0))))
    a = np.asarray(im)
    assert im.mode == "RGB" and im.size == (MARKER_CANVAS, MARKER_CANVAS)
    assert (a[..., 0] == a[..., 1]).all() and a.max() == 255 and a.min() == 25 and a[0, 0, 0] == 255
    rng = np.random.default_rng(1)
    assert _median_correlation(images, lambda x: render_marker(x, rng)) > 0.7


def test_stray_is_the_pen_drawing_plus_one_dot_away_from_it(images):
    from scipy import ndimage

    dots = 0
    for i, x in enumerate(images[:12]):
        ink = np.asarray(_open(render_stray(x, np.random.default_rng(i))))[..., 3] >= 128
        labels, n = ndimage.label(ink, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel())[1:]
        # The smallest piece, when it is round and far from all other ink, is the dot.
        dot = labels == 1 + int(sizes.argmin())
        rest = ink & ~dot
        ys, xs = np.nonzero(dot)
        h, w = np.ptp(ys) + 1, np.ptp(xs) + 1
        if n >= 2 and abs(int(h) - int(w)) <= 2 and ndimage.distance_transform_edt(~rest)[dot].min() >= STRAY_DISTANCE:
            dots += 1
    assert dots >= 9, dots


def test_dotted_pen_touches_down_apart_along_the_same_trace(images):
    """``dots``: separate discs of the pen's width, at least that many widths
    apart, all on the continuous drawing made with the same draws."""
    from scipy import ndimage

    for i, x in enumerate(images[:8]):
        wf = 0.05
        full = pen_ink(x, np.random.default_rng(i), wf) >= 0.5
        dotted = pen_ink(x, np.random.default_rng(i), wf, dots=1.5) >= 0.5
        assert dotted.any() and not (dotted & ~full).any()
        labels, n = ndimage.label(dotted, structure=np.ones((3, 3)))
        centres = np.array(ndimage.center_of_mass(dotted, labels, range(1, n + 1)))
        gaps = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)) + np.eye(n) * 1e9
        assert n >= 3 and gaps.min() >= 1.5 * wf * CANVAS - 1.5
        assert dotted.sum() < 0.7 * full.sum()


def test_pressure_pen_swells_and_thins_along_the_same_trace(images):
    """``pressure``: the same trace as the even pen, its width changing along
    the strokes (the 90th percentile of the width along the trace at least
    1.5 times the 10th, against under 1.25 for the even pen)."""
    from scipy import ndimage

    from worker.render import _thin

    for i, x in enumerate(images[:8]):
        wf = 0.05
        radius = wf * CANVAS / 2
        even = pen_ink(x, np.random.default_rng(i), wf) >= 0.5
        pressed = pen_ink(x, np.random.default_rng(i), wf, pressure=0.6) >= 0.5
        trace = _thin(even)
        even_half = ndimage.distance_transform_edt(even)[trace]
        half = ndimage.distance_transform_edt(pressed)[trace]
        assert abs(np.median(even_half) - radius) <= 1.5
        assert np.percentile(even_half, 90) < 1.25 * np.percentile(even_half, 10)
        assert np.percentile(half, 90) > 1.5 * np.percentile(half, 10)
        # Nothing drawn off the trace: every inked pixel lies within the widest
        # pen (2 radii) of it, plus the radius that thinning takes off a stroke's end.
        assert ndimage.distance_transform_edt(~trace)[pressed].max() <= 3 * radius + 1.5
