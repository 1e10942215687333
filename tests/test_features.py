"""The model's features: pure, batched, and independent of how a batch is sliced."""

from __future__ import annotations

import numpy as np
import pytest

from worker import features as F
from worker import train as T


def _glyphs(n: int, seed: int = 0) -> np.ndarray:
    """Random strokes: a few bars of random position and slant per image."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 28, 28), np.float32)
    yy, xx = np.mgrid[0:28, 0:28]
    for i in range(n):
        for _ in range(rng.integers(1, 4)):
            x0, y0 = rng.uniform(6, 22, 2)
            slope = rng.uniform(-0.6, 0.6)
            X[i] += (np.abs(xx - x0 - slope * (yy - y0)) < 1.5) & (np.abs(yy - 14) < rng.uniform(4, 11))
    return np.clip(X, 0, 1)


def test_deskew_makes_a_slanted_bar_upright():
    yy, xx = np.mgrid[0:28, 0:28]
    bar = ((np.abs(xx - 14 - 0.5 * (yy - 14)) < 1.5) & (np.abs(yy - 14) < 10)).astype(np.float32)
    out = F.deskew(bar[None])[0]
    cols = np.flatnonzero(out.sum(0) > 0.5)
    assert cols[-1] - cols[0] + 1 <= 5  # was about 12 columns wide, slanted
    assert abs(out.sum() - bar.sum()) < 0.05 * bar.sum()


def test_features_do_not_depend_on_the_slicing(monkeypatch):
    X = _glyphs(300)
    whole = F.DeskewedFeatures().transform(X)
    assert whole.shape == (300, 7 * 7 * 12 + 784) and whole.dtype == np.float32
    monkeypatch.setattr(F, "SLICE", 7)
    assert np.array_equal(F.DeskewedFeatures().transform(X), whole)
    assert np.array_equal(F.DeskewedFeatures().transform(X[:1]), whole[:1])


@pytest.mark.parametrize("options", [{}, {"elastic_p": 0.5, "set_width_p": 0.3, "extent_p": 0.5}])
def test_augment_does_not_depend_on_the_slicing(monkeypatch, options):
    X = _glyphs(300, seed=1)
    whole = T.augment(X, np.random.default_rng(4), **options)
    monkeypatch.setattr(T, "_AUGMENT_SLICE", 11)
    assert np.array_equal(T.augment(X, np.random.default_rng(4), **options), whole)
    assert not np.array_equal(T.augment(X, np.random.default_rng(5), **options), whole)


def test_a_coarse_hog_beside_the_fine_one():
    """``coarse_cell`` appends a HOG over bigger cells, pooled from the same
    orientation maps, and leaves the other features as they were."""
    X = _glyphs(50, seed=2)
    fine = F.DeskewedFeatures(pixel_pool=2).transform(X)
    both = F.DeskewedFeatures(pixel_pool=2, coarse_cell=7).transform(X)
    assert both.shape == (50, 7 * 7 * 12 + 4 * 4 * 12 + 196)
    D = F.deskew(X)
    assert np.array_equal(both[:, :588], fine[:, :588]) and np.array_equal(both[:, -196:], fine[:, -196:])
    assert np.allclose(both[:, 588:-196], F.hog(D, 7), atol=1e-6)
    assert np.allclose(F.hog(D, 4, also=(7,)), np.hstack([F.hog(D, 4), F.hog(D, 7)]), atol=1e-6)


def test_artifacts_pickled_before_the_coarse_hog_still_load():
    import pickle

    old = F.DeskewedFeatures(pixel_pool=2)
    del old.__dict__["coarse_cell"]  # as pickled before the option existed
    back = pickle.loads(pickle.dumps(old))
    assert back.coarse_cell == 0 and back.get_params()["coarse_cell"] == 0
    X = _glyphs(5)
    assert np.array_equal(back.transform(X), F.DeskewedFeatures(pixel_pool=2).transform(X))
