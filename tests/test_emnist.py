"""The EMNIST IDX reader: shapes, labels, mapping, errors and, above all, orientation."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from worker.emnist import IDXFormatError, load_images, load_labels, load_mapping, load_split




LABELS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt"


@pytest.fixture(scope="module")
def data(emnist_dir) -> Path:
    return emnist_dir


@pytest.fixture(scope="module")
def test_split(data):
    return load_split(data, "test")


def test_test_split_shapes_and_balance(test_split):
    X, y = test_split
    assert X.shape == (9400, 28, 28) and X.dtype == np.uint8
    assert y.shape == (9400,) and y.min() == 0 and y.max() == 46
    assert np.all(np.bincount(y) == 200)
    assert X.flags["C_CONTIGUOUS"]


def test_mapping(data):
    assert "".join(load_mapping(data, "emnist-47")) == LABELS


def test_train_labels(data):
    y = load_labels(data / "emnist-47-train-labels-idx1-ubyte.gz")
    assert len(y) == 105_584
    assert np.bincount(y).min() == 187 and np.bincount(y).max() == 6172


# --------------------------------------------------------------------------- orientation


def _quadrant_facts(mean: np.ndarray) -> dict[str, bool]:
    """Where the ink of a class-mean image lies, as booleans."""
    left, right = mean[:, :14].sum(), mean[:, 14:].sum()
    top, bottom = mean[:14].sum(), mean[14:].sum()
    return {"left>right": left > right * 1.1, "right>left": right > left * 1.1,
            "top>bottom": top > bottom * 1.1, "bottom>top": bottom > top * 1.1}


# The known shapes of asymmetric characters, upright.
EXPECTED = {
    "L": ("left>right", "bottom>top"),
    "F": ("left>right", "top>bottom"),
    "7": ("right>left", "top>bottom"),
    "J": ("right>left",),
    "P": ("top>bottom",),
    "b": ("left>right", "bottom>top"),
}


def _holds(images: np.ndarray, y: np.ndarray) -> bool:
    for ch, facts in EXPECTED.items():
        mean = images[y == LABELS.index(ch)].astype(np.float64).mean(0)
        got = _quadrant_facts(mean)
        if not all(got[f] for f in facts):
            return False
    return True


def test_images_are_upright(test_split):
    X, y = test_split
    assert _holds(X, y), "class means of L, F, 7, J, P, b are not where upright ink would be"


@pytest.mark.parametrize("wrong", ["stored", "rot90", "rot270", "flipud", "fliplr"])
def test_orientation_check_rejects_rotations_and_mirrors(test_split, wrong):
    """The check above would catch a rotation (a mirror image) instead of a transpose."""
    X, y = test_split
    stored = X.transpose(0, 2, 1)  # undo our transpose: the file's own layout
    alt = {
        "stored": stored,
        "rot90": np.rot90(stored, 1, axes=(1, 2)),
        "rot270": np.rot90(stored, -1, axes=(1, 2)),
        "flipud": X[:, ::-1],
        "fliplr": X[:, :, ::-1],
    }[wrong]
    assert not _holds(alt, y)


# --------------------------------------------------------------------------- files and errors


def test_official_prefix(tmp_path, data):
    """The official emnist-balanced-* names load with prefix='emnist-balanced'."""
    for kind in ("images-idx3", "labels-idx1"):
        src = data / f"emnist-47-test-{kind}-ubyte.gz"
        (tmp_path / f"emnist-balanced-test-{kind}-ubyte.gz").symlink_to(src)
    shutil.copy(data / "emnist-47-mapping.txt", tmp_path / "emnist-balanced-mapping.txt")
    X, y = load_split(tmp_path, "test", prefix="emnist-balanced")
    assert X.shape == (9400, 28, 28) and len(y) == 9400
    assert len(load_mapping(tmp_path, "emnist-balanced")) == 47


def _gz(path: Path, payload: bytes) -> Path:
    with gzip.open(path, "wb") as fh:
        fh.write(payload)
    return path


def test_roundtrip_transposes(tmp_path):
    img = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    p = _gz(tmp_path / "x.gz", struct.pack(">IIII", 2051, 2, 28, 28) + img.tobytes())
    out = load_images(p)
    assert np.array_equal(out[1], img[1].T)


def test_wrong_magic(tmp_path):
    p = _gz(tmp_path / "x.gz", struct.pack(">IIII", 2049, 1, 28, 28) + bytes(784))
    with pytest.raises(IDXFormatError, match="magic 2049, expected 2051"):
        load_images(p)
    q = _gz(tmp_path / "y.gz", struct.pack(">II", 2051, 3) + bytes(3))
    with pytest.raises(IDXFormatError, match="expected 2049"):
        load_labels(q)


def test_truncated_and_not_gzip(tmp_path):
    p = _gz(tmp_path / "x.gz", struct.pack(">IIII", 2051, 5, 28, 28) + bytes(784))
    with pytest.raises(IDXFormatError, match="header says 5x28x28"):
        load_images(p)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(IDXFormatError):
        load_images(bad)


def test_missing_split(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError):
        load_split(tmp_path, "validation")
