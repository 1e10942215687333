"""The model's features: pure, batched, independent of how a batch is sliced, and
the same from the compiled pass (``worker._features``) as from the numpy code."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import compiler_found
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
    monkeypatch.setattr(F, "_compiled", None)  # the numpy code's slices; the compiled pass goes image by image
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


def test_a_coarse_hog_beside_the_fine_one(monkeypatch):
    """``coarse_cell`` appends a HOG over bigger cells, pooled from the same
    orientation maps, and leaves the other features as they were."""
    monkeypatch.setattr(F, "_compiled", None)  # the option exists in the numpy code only
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


# --------------------------------------------------------------------------- the compiled pass


def _numpy_features(monkeypatch, feats: F.DeskewedFeatures, X: np.ndarray) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(F, "_compiled", None)
        return feats.transform(X)


def test_the_compiled_pass_is_built_where_a_compiler_is():
    if not compiler_found():
        pytest.skip("no C compiler on this machine: the numpy code serves")
    assert F._compiled is not None, "worker._features was not built: reinstall (pip install -e .) and read the compiler's error"


def _hostile_images() -> np.ndarray:
    """Blank, one pixel, full, a corner, a hairline at the edge, extreme slants."""
    X = np.zeros((8, 28, 28), np.float32)
    X[1, 13, 13] = 1.0
    X[2] = 1.0
    X[3, :4, :4] = 0.7
    X[4, :, 27] = 1.0
    yy, xx = np.mgrid[0:28, 0:28]
    X[5] = np.abs(xx - yy) < 1.2  # 45 degrees: the skew is clipped
    X[6] = np.abs(xx + yy - 27) < 1.2
    X[7] = np.random.default_rng(3).random((28, 28))
    return X


@pytest.mark.parametrize("settings", [
    {"pixel_pool": 2},  # the model's
    {"pixel_pool": 1}, {"pixel_pool": 0}, {"pixel_pool": 3, "cell": 7, "bins": 9},
    {"pixel_pool": 2, "max_skew": 0.0}, {"pixel_pool": 2, "cell": 5, "bins": 16},
])
def test_the_compiled_pass_equals_the_numpy_code(monkeypatch, emnist_test, settings):
    if F._compiled is None:
        pytest.skip("worker._features is not built (no C compiler at install)")
    X_test, _, _ = emnist_test
    X = np.concatenate([X_test[:300].astype(np.float32) / 255, _glyphs(100, seed=5), _hostile_images()])
    feats = F.DeskewedFeatures(**settings)
    ref = _numpy_features(monkeypatch, feats, X)
    got = feats.transform(X)
    assert got.shape == ref.shape and got.dtype == np.float32
    # Float32 rounding, sums in another order and a polynomial angle; the square
    # root of a HOG cell near zero magnifies those to about 1e-4 at most.
    assert np.abs(got - ref).max() < 1e-3
    assert np.abs(got - ref).mean() < 1e-6
    # Float64 input, or Fortran order, gives the same.
    assert np.array_equal(feats.transform(X.astype(np.float64)), got)
    assert np.array_equal(feats.transform(np.asfortranarray(X)), got)


def test_the_compiled_pass_survives_non_finite_pixels():
    """NaN, inf and float32's largest values never come out of preprocessing, but a
    caller of the model may pass them: the compiled pass must not index outside
    its histograms on them (opposite extremes side by side overflow to inf in the
    deskewed image, and so reach the gradients), and the images beside them keep
    their features."""
    if F._compiled is None:
        pytest.skip("worker._features is not built (no C compiler at install)")
    X = _glyphs(7, seed=7)
    X[1, 10:14, 10:14] = np.nan
    X[2, 5, 5] = np.inf
    X[3, 20, 3:9] = -np.inf
    X[4] = np.nan
    X[5, 10, 10], X[5, 10, 11] = 3e38, -3e38
    feats = F.DeskewedFeatures(pixel_pool=2)
    got = feats.transform(X)
    clean = feats.transform(X[[0, 6]])
    assert got.shape == (7, 784)
    assert np.array_equal(got[[0, 6]], clean)
    assert not np.isfinite(got[5]).all()  # the overflow did reach the features


def test_the_compiled_pass_refuses_buffers_of_the_wrong_size():
    if F._compiled is None:
        pytest.skip("worker._features is not built (no C compiler at install)")
    X = np.zeros((2, 28, 28), np.float32)
    with pytest.raises(ValueError):
        F._compiled.deskewed_features(X, np.empty((2, 700), np.float32), 2, 4, 12, 2, 1.0)
    with pytest.raises(ValueError):
        F._compiled.deskewed_features(X, np.empty((3, 784), np.float32), 3, 4, 12, 2, 1.0)
    with pytest.raises(ValueError):
        F._compiled.deskewed_features(X, np.empty((2, 784), np.float32), 2, 1, 12, 2, 1.0)
