"""Feature transformers of the model pipeline (scikit-learn, batched numpy).

Every transformer takes ``(n, 28, 28)`` float arrays (upright, ink = 1, values
in [0, 1]; a flat ``(n, 784)`` array is accepted too) and works on the whole
batch at once: no per-image Python.

- :class:`Deskew` -- moment deskewing: shears each image so that its ink's
  principal axis is vertical (``x' = x + (mu11 / mu02) * (y - cy)``), with
  bilinear interpolation, output ``(n, 28, 28)``.
- :class:`HOG` -- histograms of oriented gradients: signed orientations soft-
  assigned to ``bins`` bins, pooled over ``cell`` x ``cell`` pixel cells with
  bilinear spatial weights, each cell normalised by the energy of its 2x2
  cell blocks, square-rooted. Output ``(n, n_cells * bins)``.
- :class:`Pixels` -- the pixels themselves, optionally average-pooled.
- :class:`Concat` -- horizontal concatenation of several feature transformers
  applied to the same input (a light ``FeatureUnion`` that keeps float32).

All are stateless (``fit`` only records the input shape), picklable and keep
float32.

:class:`DeskewedFeatures`, the model's own, runs as one compiled pass per
image where ``worker._features`` was built (``worker/_features.c``, optional
like ``worker._fastpng``): 12 us an image on one core against 30 for the
numpy code here, which stays the reference and the fallback. The two agree to
float32 rounding (the C sums in another order, and its gradient angle is a
polynomial within 2e-6 radians), checked in ``tests/test_features.py``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

try:  # the compiled pass; without it the numpy code below does the same work
    from . import _features as _compiled
except ImportError:  # pragma: no cover - exercised where no compiler was found
    _compiled = None

#: Version of the features, recorded in the model card.
FEATURES_VERSION = "1"


def as_images(X: np.ndarray) -> np.ndarray:
    """``(n, 784)`` or ``(n, 28, 28)`` -> float32 ``(n, 28, 28)``."""
    X = np.asarray(X)
    if X.ndim == 2 and X.shape[1] == 784:
        X = X.reshape(-1, 28, 28)
    if X.ndim != 3 or X.shape[1:] != (28, 28):
        raise ValueError(f"expected (n, 28, 28) images, got shape {X.shape}")
    if X.dtype == np.uint8:
        return X.astype(np.float32) * np.float32(1 / 255)
    return X.astype(np.float32, copy=False)


class _Stateless(TransformerMixin, BaseEstimator):
    def fit(self, X, y=None):  # noqa: D102 - nothing to learn
        as_images(X[:1])
        self.n_features_in_ = 784
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags


_YY, _XX = np.mgrid[0:28, 0:28].astype(np.float32)


def deskew(X: np.ndarray, max_skew: float = 1.0) -> np.ndarray:
    """Moment-deskew a batch of images (see :class:`Deskew`)."""
    X = as_images(X)
    n = X.shape[0]
    if n == 0:
        return X.copy()
    m = X.sum(axis=(1, 2))
    m = np.where(m > 0, m, 1.0).astype(np.float32)
    cy = (X * _YY).sum(axis=(1, 2)) / m
    cx = (X * _XX).sum(axis=(1, 2)) / m
    dy = _YY[None] - cy[:, None, None]
    dx = _XX[None] - cx[:, None, None]
    mu11 = (X * dx * dy).sum(axis=(1, 2)) / m
    mu02 = (X * dy * dy).sum(axis=(1, 2)) / m
    alpha = np.clip(mu11 / np.maximum(mu02, 1e-3), -max_skew, max_skew).astype(np.float32)
    # Source column of every output pixel; rows are unchanged.
    src = _XX[None] + alpha[:, None, None] * (_YY[None] - cy[:, None, None])
    x0 = np.floor(src)
    frac = (src - x0).astype(np.float32)
    x0 = x0.astype(np.int64) + 1  # +1: index into the zero-padded image
    P = np.zeros((n, 28, 30), np.float32)
    P[:, :, 1:29] = X
    i0 = np.clip(x0, 0, 29)
    i1 = np.clip(x0 + 1, 0, 29)
    v0 = np.take_along_axis(P, i0, axis=2)
    v1 = np.take_along_axis(P, i1, axis=2)
    return v0 + frac * (v1 - v0)


class Deskew(_Stateless):
    """Moment deskewing of ``(n, 28, 28)`` images; output ``(n, 28, 28)``."""

    def __init__(self, max_skew: float = 1.0):
        self.max_skew = max_skew

    def transform(self, X):
        return deskew(X, self.max_skew)


def _cell_weights(cell: int, size: int = 28) -> np.ndarray:
    """(n_cells, size) bilinear weights of each pixel coordinate for each cell centre."""
    n_cells = size // cell
    centres = (np.arange(n_cells) + 0.5) * cell - 0.5
    coords = np.arange(size, dtype=np.float32)
    w = np.maximum(0.0, 1.0 - np.abs(coords[None, :] - centres[:, None]) / cell)
    return w.astype(np.float32)


def hog(X: np.ndarray, cell: int = 4, bins: int = 12, *, also: tuple[int, ...] = ()) -> np.ndarray:
    """Batched HOG (see :class:`HOG`), float32 ``(n, (28 // cell) ** 2 * bins)``.

    Each gradient's magnitude goes to the two nearest of ``bins`` signed
    orientation bins, linearly (a cosine-projection binning is faster but
    scored 3 points lower on validation); the orientation maps are filled by
    two scatters and pooled by two small matrix products. ``also``: further
    cell sizes pooled from the same maps, their features appended in order.
    """
    X = as_images(X)
    n = X.shape[0]
    P = np.pad(X, ((0, 0), (1, 1), (1, 1)))
    gx = P[:, 1:-1, 2:] - P[:, 1:-1, :-2]
    gy = P[:, 2:, 1:-1] - P[:, :-2, 1:-1]
    mag = np.sqrt(gx * gx + gy * gy)
    ang = np.arctan2(gy, gx)
    ang *= np.float32(bins / (2 * np.pi))
    ang += np.float32(bins)  # positive
    b0 = ang.astype(np.int32)  # floor
    f = ang - b0
    b0 %= bins
    b1 = b0 + 1
    b1[b1 == bins] = 0
    w1 = mag * f
    w0 = mag - w1
    # orientation maps laid out (n, y, bin, x), filled by two scatters
    base = (np.arange(n * 28, dtype=np.int64)[:, None] * (bins * 28)
            + np.arange(28, dtype=np.int64)[None, :]).reshape(n, 28, 28)
    H = np.zeros(n * 28 * bins * 28, np.float32)
    H[base + b0 * 28] = w0
    H[base + b1 * 28] = w1
    parts = [_pooled_cells(H, n, size, bins) for size in (cell, *also)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def _pooled_cells(H: np.ndarray, n: int, cell: int, bins: int) -> np.ndarray:
    """Orientation maps ``H`` (flat, laid out (n, y, bin, x)) pooled over cells
    of ``cell`` px, each cell normalised by the energy of its 2x2 cell blocks,
    square-rooted: ``(n, (28 // cell) ** 2 * bins)``."""
    W = _cell_weights(cell)
    c = W.shape[0]
    px = (H.reshape(-1, 28) @ W.T).reshape(n, 28, bins * c)  # (n, y, b * j)
    pooled = np.matmul(W, px)  # (n, i, b * j)
    pooled = pooled.reshape(n, c, bins, c).transpose(0, 1, 3, 2)  # (n, i, j, b)
    e = (pooled * pooled).sum(-1)
    ep = np.pad(e, ((0, 0), (1, 1), (1, 1)), mode="edge")
    block = ep[:, :-1, :-1] + ep[:, 1:, :-1] + ep[:, :-1, 1:] + ep[:, 1:, 1:]
    norm = 0.25 * (block[:, :-1, :-1] + block[:, 1:, :-1] + block[:, :-1, 1:] + block[:, 1:, 1:])
    out = np.sqrt(np.maximum(pooled / np.sqrt(norm + 1e-2)[..., None], 0))
    return out.reshape(n, c * c * bins).astype(np.float32, copy=False)


class HOG(_Stateless):
    """Histograms of oriented gradients over ``cell`` px cells, ``bins`` signed bins."""

    def __init__(self, cell: int = 4, bins: int = 12):
        self.cell = cell
        self.bins = bins

    def transform(self, X):
        return hog(X, self.cell, self.bins)


class Pixels(_Stateless):
    """Pixels, average-pooled by ``pool`` (1 = all 784), flattened."""

    def __init__(self, pool: int = 1):
        self.pool = pool

    def transform(self, X):
        X = as_images(X)
        p = self.pool
        if p > 1:
            # Summed strided views: a reduction over two inner axes of a 5-D
            # reshape is about 15x slower in numpy.
            k = 28 // p
            X = X[:, : k * p, : k * p]
            acc = X[:, 0::p, 0::p].copy()
            for dy in range(p):
                for dx in range(p):
                    if dy or dx:
                        acc += X[:, dy::p, dx::p]
            X = acc * np.float32(1 / (p * p))
        return X.reshape(len(X), -1)


class Concat(_Stateless):
    """Concatenate the outputs of ``transformers`` (a list of (name, transformer))."""

    def __init__(self, transformers):
        self.transformers = transformers

    def transform(self, X):
        X = as_images(X)
        return np.concatenate([t.transform(X) for _, t in self.transformers], axis=1)


#: Images per vectorised pass. The intermediate arrays take about 40 kB an
#: image; past a hundred or so images they leave the CPU's caches and every
#: pass runs slower (one core: about 33 us an image in slices of 64, 34 in
#: 128, 37 in 256, 210 in one pass over 20,000).
SLICE = 64


class DeskewedFeatures(_Stateless):
    """Deskew, then HOG + pooled pixels of the deskewed image (the model's features).

    ``coarse_cell`` (0: none) adds a second HOG over cells of that size, pooled
    from the same orientation maps: the shape of whole strokes beside the
    detail of the fine cells.
    """

    #: For artifacts pickled before the option existed.
    coarse_cell = 0

    def __init__(self, cell: int = 4, bins: int = 12, pixel_pool: int = 1, max_skew: float = 1.0,
                 coarse_cell: int = 0):
        self.cell = cell
        self.bins = bins
        self.pixel_pool = pixel_pool
        self.max_skew = max_skew
        self.coarse_cell = coarse_cell

    def transform(self, X):
        X = as_images(X)
        if _compiled is not None and self._compiles():
            return self._compiled_transform(X)
        if len(X) <= SLICE:
            return self._transform(X)
        return np.concatenate([self._transform(X[i:i + SLICE]) for i in range(0, len(X), SLICE)])

    def _compiles(self) -> bool:
        """Whether ``worker._features`` covers these settings (it has no coarse cells)."""
        return (not self.coarse_cell and 2 <= self.cell <= 28 and 2 <= self.bins <= 64
                and 0 <= self.pixel_pool <= 28)

    def _compiled_transform(self, X):
        X = np.ascontiguousarray(X, dtype=np.float32)
        c = 28 // self.cell
        k = 28 // self.pixel_pool if self.pixel_pool else 0
        out = np.empty((len(X), c * c * self.bins + k * k), np.float32)
        _compiled.deskewed_features(X, out, len(X), self.cell, self.bins, self.pixel_pool, float(self.max_skew))
        return out

    def _transform(self, X):
        D = deskew(X, self.max_skew)
        parts = [hog(D, self.cell, self.bins, also=(self.coarse_cell,) if self.coarse_cell else ())]
        if self.pixel_pool:
            parts.append(Pixels(self.pixel_pool).transform(D))
        return np.concatenate(parts, axis=1)
