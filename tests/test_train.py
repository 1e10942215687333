"""Training end to end on a small subset: a loadable artifact and a complete card."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from worker.emnist import load_split
from worker.model import load_model
from worker.train import (_stratified_split, augment, canvas_normalise, class_sampling, pen_normalise,
                          set_stroke_width, stroke_widths, train)


def test_train_small_subset(tmp_path, emnist_dir):
    out = tmp_path / "m.joblib"
    lines: list[str] = []
    card = train(emnist_dir, out, limit=2000, epochs=1, seed=3, members=2, canvas_mix=0.5, pen_mix=0.3,
                 pen_widths=(0.03, 0.1), class_balance=0.5,
                 evaluate_test=True,
                 eval_limit=200, eval_renderings=False, command="pytest", progress=lines.append)
    assert out.exists() and out.with_suffix(".json").exists()
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["artifact"]["sha256"] == card["artifact"]["sha256"]
    assert on_disk["training"]["command"] == "pytest"
    assert on_disk["data"]["limit"] == 2000
    assert "top1" in on_disk["eval"]["raw"]
    assert any("epoch 1/1" in m for m in lines) and any("left" in m for m in lines)
    assert any("canvas-normalising" in m for m in lines) and any("with a pen" in m for m in lines)
    assert on_disk["training"]["pen_mix"] == 0.3 and on_disk["training"]["pen_varied"] == 0.5
    assert on_disk["training"]["pen_widths"] == [0.03, 0.1]
    assert on_disk["training"]["class_balance"] == 0.5
    # The prior the model divides by is the one its epochs were drawn with,
    # not the training frequencies: the same subset and split, redrawn here.
    _, y_all = load_split(emnist_dir, "train", "emnist-47")
    rng = np.random.default_rng(3)
    y = y_all[np.sort(rng.choice(len(y_all), size=2000, replace=False))]
    tr, _ = _stratified_split(y, 0.1, rng)
    drawn = class_sampling(y[tr], 47, 0.5)[1]
    assert np.allclose(joblib.load(out)["class_prior"], drawn)
    assert not np.allclose(drawn, class_sampling(y[tr], 47, 0.0)[1], atol=1e-3)
    assert on_disk["training"]["members"] == 2 and len(on_disk["training"]["best_epoch"]) == 2
    m = load_model(out)
    p = m.predict_proba(np.zeros((2, 28, 28), np.float32))
    assert p.shape == (2, 47)
    # Only what prediction needs is pickled: no optimizer state, no second copy of the weights.
    for net in joblib.load(out)["pipeline"].steps[-1][1].estimators:
        assert net._optimizer is None and net._best_coefs is None and net._best_intercepts is None


def test_class_sampling_draws_classes_by_a_power_of_their_size():
    y = np.repeat(np.arange(3), [100, 400, 1600])
    none, freq = class_sampling(y, 3, 0.0)
    assert none is None
    assert np.allclose(freq, np.array([101, 401, 1601]) / 2103)
    for balance in (0.5, 1.0):
        draw, prior = class_sampling(y, 3, balance)
        assert draw.shape == y.shape and abs(draw.sum() - 1) < 1e-12
        mass = np.bincount(y, weights=draw)
        # the classes' shares of an epoch are the prior the model is corrected with
        assert np.allclose(mass, np.array([100, 400, 1600]) ** (1 - balance)
                           / (np.array([100, 400, 1600]) ** (1 - balance)).sum())
        assert np.allclose(prior, mass, atol=2e-3)
    assert np.allclose(class_sampling(y, 3, 1.0)[1], 1 / 3)
    drawn = np.random.default_rng(0).choice(len(y), 60_000, p=class_sampling(y, 3, 0.5)[0])
    assert np.allclose(np.bincount(y[drawn]) / 60_000, [1 / 7, 2 / 7, 4 / 7], atol=0.01)
    # a class missing from a small subset still gets a (small) prior
    draw, prior = class_sampling(np.array([0, 0, 2]), 3, 0.5)
    assert prior[1] > 0 and draw[2] > draw[0]


def test_augment_is_reproducible_and_sane():
    X = np.zeros((4, 28, 28), np.float32)
    X[:, 6:22, 12:16] = 1.0
    a = augment(X, np.random.default_rng(0))
    b = augment(X, np.random.default_rng(0))
    assert np.array_equal(a, b)
    assert a.shape == X.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.all(a.sum((1, 2)) > 0.5 * X.sum((1, 2)))


def test_canvas_normalise_keeps_images_emnist_like():
    X = np.zeros((3, 28, 28), np.float32)
    X[:, 4:24, 12:15] = 1.0  # a '1' of 3 px
    X[2] = 0.0  # blank: kept as it is
    out = canvas_normalise(X)
    assert out.shape == X.shape and out.dtype == np.float32
    assert out[0].max() == 1.0 and np.array_equal(out[2], X[2])
    rows = np.flatnonzero((out[0] > 0.1).any(1))
    assert 23 <= rows[-1] - rows[0] + 1 <= 25  # long side 24 px, as EMNIST


def test_canvas_normalise_thickness_is_seeded_and_changes_strokes():
    X = _bar_glyphs(6)
    plain = canvas_normalise(X)
    a = canvas_normalise(X, thickness=1.0, rng=np.random.default_rng(3))
    b = canvas_normalise(X, thickness=1.0, rng=np.random.default_rng(3))
    assert np.array_equal(a, b)
    assert not np.allclose(a, plain)
    # Thinned or thickened, then brought back by preprocessing: still the same glyph.
    for x, y in zip(a, plain):
        assert np.corrcoef(x.ravel(), y.ravel())[0, 1] > 0.8
    with pytest.raises(ValueError):
        canvas_normalise(X, thickness=0.5)


def _bar_glyphs(n: int) -> np.ndarray:
    """``n`` EMNIST-like glyphs: an 'L' of 3 px strokes, blurred like a scan."""
    from scipy import ndimage

    X = np.zeros((n, 28, 28), np.float32)
    X[:, 3:25, 10:13] = 1.0
    X[:, 22:25, 10:20] = 1.0
    return ndimage.gaussian_filter(X, sigma=(0, 0.7, 0.7))


def test_set_stroke_width_reaches_the_target():
    X = _bar_glyphs(3)
    X /= X.max(axis=(1, 2), keepdims=True)
    target = np.array([2.0, 3.0, 4.2], np.float32)
    out = set_stroke_width(X, target)
    assert out.shape == X.shape and out.min() >= 0 and out.max() <= 1
    assert np.allclose(stroke_widths(out), target, atol=0.35), stroke_widths(out)
    assert stroke_widths(out)[0] < stroke_widths(X)[0] < stroke_widths(out)[2]


def test_augment_elastic_is_reproducible_and_moves_ink():
    X = _bar_glyphs(8)
    flat = {"rotate_deg": 0.0, "scale": (1.0, 1.0), "aspect": 0.0, "shear": 0.0, "shift_px": 0.0,
            "width_p": 0.0}
    plain = augment(X, np.random.default_rng(1), **flat)
    a = augment(X, np.random.default_rng(1), elastic_p=1.0, **flat)
    assert np.array_equal(a, augment(X, np.random.default_rng(1), elastic_p=1.0, **flat))
    assert a.shape == X.shape and a.min() >= 0 and a.max() <= 1
    moved = np.abs(a - plain).sum((1, 2)) / plain.sum((1, 2))
    assert np.all(moved > 0.05) and np.all(a.sum((1, 2)) > 0.6 * plain.sum((1, 2)))


def test_augment_extent_normalisation_brings_glyphs_to_24px():
    X = np.zeros((64, 28, 28), np.float32)
    X[:, 8:20, 12:15] = 1.0  # a short '1', 12 px tall
    flat = {"rotate_deg": 0.0, "scale": (1.0, 1.0), "aspect": 0.0, "shear": 0.0, "shift_px": 0.0,
            "width_p": 0.0}
    out = augment(X, np.random.default_rng(0), extent_p=1.0, **flat)
    tall = [(o > 0.1).any(1).sum() for o in out]
    assert all(23 <= t <= 26 for t in tall), tall
    same = augment(X, np.random.default_rng(0), **flat)
    assert all((o > 0.1).any(1).sum() == 12 for o in same)


def test_pen_normalise_redraws_with_an_even_pen(emnist_dir):
    from worker.emnist import load_split

    X, _ = load_split(emnist_dir, "test")
    X = X[:40].astype(np.float32) / 255
    one = pen_normalise(X, seed=5, processes=1, chunk=16)
    two = pen_normalise(X, seed=5, processes=2, chunk=16)
    assert np.array_equal(one, two)  # seeded per chunk, not per process
    assert one.shape == X.shape and one.dtype == np.float32
    assert not np.array_equal(one, X)
    rows = [(o > 0.1).any(1).nonzero()[0] for o in one]
    cols = [(o > 0.1).any(0).nonzero()[0] for o in one]
    extents = [max(r[-1] - r[0], c[-1] - c[0]) + 1 for r, c in zip(rows, cols)]
    assert np.median(extents) == 24  # the size preprocessing gives every drawing
    # An even pen: the widths spread less than the scans' own.
    assert np.std(stroke_widths(one)) < np.std(stroke_widths(X))


def test_pen_normalise_varies_skeletons_and_pens_when_asked(emnist_dir):
    from PIL import Image

    from worker.emnist import load_split
    from worker.train import PEN_PRESSURE, _pen_style

    X, _ = load_split(emnist_dir, "test")
    X = X[:40].astype(np.float32) / 255
    even = pen_normalise(X, seed=5, processes=1, chunk=16)
    one = pen_normalise(X, seed=5, varied=0.5, processes=1, chunk=16)
    assert np.array_equal(one, pen_normalise(X, seed=5, varied=0.5, processes=2, chunk=16))
    assert not np.array_equal(one, even)
    rows = [(o > 0.1).any(1).nonzero()[0] for o in one]
    cols = [(o > 0.1).any(0).nonzero()[0] for o in one]
    assert np.median([max(r[-1] - r[0], c[-1] - c[0]) + 1 for r, c in zip(rows, cols)]) == 24
    styles = [_pen_style(np.random.default_rng(i)) for i in range(200)]
    assert {s["up"] for s in styles} == {3, 4}
    assert {s["resample"] for s in styles} == {Image.BILINEAR, Image.BICUBIC}
    levels = [s["level"] for s in styles]
    assert 76 <= min(levels) < 90 and 165 < max(levels) <= 179
    assert 0 <= min(s["pressure"] for s in styles) < 0.05 and 0.55 < max(s["pressure"] for s in styles) <= PEN_PRESSURE


def test_train_without_a_validation_split_keeps_the_last_epoch(tmp_path, emnist_dir):
    out = tmp_path / "m.joblib"
    lines: list[str] = []
    card = train(emnist_dir, out, limit=600, epochs=2, members=1, canvas_mix=0.0, pen_mix=0.0, val_frac=0.0,
                 evaluate_test=False, command="pytest", progress=lines.append)
    assert card["data"]["train_images"] == 600 and card["data"]["val_images"] == 0
    assert card["training"]["best_epoch"] == [2] and card["training"]["val_balanced_accuracy"] is None
    assert all("val_balanced" not in h for h in card["training"]["history"])
    assert any("no validation split" in m for m in lines)
    assert load_model(out).predict_proba(np.zeros((1, 28, 28), np.float32)).shape == (1, 47)
