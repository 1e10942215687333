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
